# SPDX-License-Identifier: Apache-2.0
"""The quarterly review (manual 2.2) on the real stack, run through ansible-runner as AWX runs it.

Findings are planted on the converged host and the review must find them: a
port opened on every address, a secret file made 0644, and (through a test
copy of the end-of-life table) the running PostgreSQL marked past its end of
life. The real testssl.sh must report TLS 1.0 refused, the second benchmark
run must compare with the first, and the review must change nothing.
Everything planted is removed before each test ends.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET_FILE = "/etc/bmops/backup.json"  # noqa: S105 (a path, not a password)
HISTORY = "/var/lib/bmops/review/bench-history.json"
PLANTED_PORT = 8765
FAIL_NONE = {"quarterly_review_fail_priority": "none"}
# short benchmark runs: the test is about what the review finds, not the figures
SHORT = {"quarterly_review_bench_duration": 3, "quarterly_review_bench_redis_seconds": 2}


def review_report(stack) -> dict:
    return json.loads(stack.sh("cat /var/lib/bmops/reports/review-latest.json").stdout)


def titles(report: dict, priority: str | None = None) -> list[str]:
    return [f["title"] for f in report["findings"] if priority in (None, f["priority"])]


@pytest.fixture
def eol_table(tmp_path) -> Path:
    """A copy of the shipped table in which the running PostgreSQL (15) has ended."""
    table = yaml.safe_load((ROOT / "roles/quarterly_review/files/eol.yml").read_text())
    for cycle in table["products"]["postgresql"]["cycles"]:
        if cycle["cycle"] == "15":
            cycle["eol"] = "2020-01-01"
    path = tmp_path / "eol.yml"
    path.write_text(yaml.safe_dump(table))
    return path


@pytest.fixture
def planted(stack):
    """A listener on every address and a world-readable secret file, removed afterwards."""
    stack.sh(f"systemd-run --unit=bmops-planted-port python3 -m http.server {PLANTED_PORT}")
    stack.sh(f"chmod 0644 {SECRET_FILE}")
    try:
        stack.sh(f"for i in $(seq 50); do ss -Hltn 'sport = :{PLANTED_PORT}' | grep -q . && exit 0;"
                 " sleep 0.2; done; exit 1")
        yield
    finally:
        stack.sh("systemctl stop bmops-planted-port", check=False)
        stack.sh(f"chmod 0600 {SECRET_FILE}")


def test_review_finds_what_was_planted_and_changes_nothing(stack, planted, eol_table):
    stack.sh("rm -f /var/lib/bmops/review/bench-history.json")
    # the default level (fail on P1): everything planted is P2, and the demo
    # inventory has testssl.sh trust the self-signed certificate
    result = stack.run("quarterly_review", verbosity=3,
                       extravars={**SHORT, "quarterly_review_eol_file": str(eol_table)})
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed_tasks() == []
    report = review_report(stack)
    assert set(report["parts"]) == {"security", "dependencies", "benchmark"}

    # security: the planted port and file, and the real TLS configuration
    assert f"Unexpected listener on every address, tcp port {PLANTED_PORT}" in titles(report, "P2")
    assert f"Secret file readable by others: {SECRET_FILE}" in titles(report, "P2")
    security = report["parts"]["security"]
    tls = security["tls"]["protocols"]
    assert tls["TLS1"] == "not offered" and tls["TLS1_1"] == "not offered", tls
    assert tls["TLS1_2"].startswith("offered") and tls["TLS1_3"].startswith("offered"), tls
    assert security["tls"]["chain"].startswith("passed"), security["tls"]["chain"]
    assert titles(report, "P1") == []
    assert isinstance(security["lynis"]["hardening_index"], int)
    assert security["lynis"]["tests_performed"] > 100
    listening = {(s["port"], s["exposure"]) for s in security["listeners"]}
    assert {(443, "all"), (5432, "loopback"), (6379, "loopback")} <= listening
    assert not [t for t in titles(report) if "PostgreSQL on" in t or "Redis on" in t]
    assert {c["name"].lstrip("/") for c in security["containers"]} >= {"backup-backend"}

    # dependencies: the versions really running, against the test table
    rows = {r["component"]: r for r in report["parts"]["dependencies"]["rows"]}
    assert rows["postgresql"]["version"].startswith("15.") and rows["postgresql"]["status"] == "eol"
    assert rows["debian"]["version"] == "13" and rows["nginx"]["status"] == "supported"
    assert rows["docker"]["version"] and rows["python"]["version"].startswith("3.")
    assert any(t.startswith("PostgreSQL 15.") and "past its end of life" in t
               for t in titles(report, "P2"))

    # benchmark: figures, nothing to compare with yet, the scratch database gone
    bench = report["parts"]["benchmark"]
    assert bench["previous_at"] is None and bench["errors"] == []
    figures = bench["figures"]
    assert figures["http_ready.requests_per_second"] > 0 and figures["http_ready.p99_ms"] > 0
    assert figures["pgbench.tps"] > 0 and figures["redis.avg_ms"] >= 0
    assert figures["http_api.requests_per_second"] > 0  # the demo's API path, all 2xx
    scratch = "SELECT count(*) FROM pg_database WHERE datname = 'bmops_review_bench'"
    assert stack.psql(scratch) == "0"

    summary = result.artifact_data["bmops_review"]
    assert summary["status"] == report["status"] and summary["counts"] == report["counts"]
    assert summary["report"].endswith(".md")
    files = set(stack.sh("ls /var/lib/bmops/reports/").stdout.split())
    assert {"review-latest.json", "review-latest.md", "review-latest.html"} <= files

    # no password reaches the job events, even at -vvv (REDISCLI_AUTH, the DB password)
    blobs = [json.dumps(ev) for ev in result.events] + [result.stdout]
    for name, secret in stack.passwords().items():
        assert not [b for b in blobs if secret in b], f"{name} reached the job events"


def test_second_benchmark_compares_with_the_first(stack):
    history = json.loads(stack.sh(f"cat {HISTORY}").stdout)
    assert len(history) >= 1
    # make the last review look three times as fast: this one must be flagged
    first = history[-1]["figures"]
    history[-1]["figures"] = {k: (v * 3 if k.endswith(("requests_per_second", ".tps"))
                                  else v / 3) for k, v in first.items()}
    subprocess.run(["docker", "exec", "-i", stack.host, "sh", "-c", f"cat > {HISTORY}"],
                   input=json.dumps(history), text=True, check=True)
    result = stack.run("quarterly_review", tags="benchmark", extravars=SHORT)
    assert result.rc == 0, result.stdout[-3000:]  # a regression is P3: the play does not fail
    report = review_report(stack)
    assert set(report["parts"]) == {"benchmark"}
    bench = report["parts"]["benchmark"]
    assert bench["previous_at"] == history[-1]["at"]
    rows = {r["name"]: r for r in bench["rows"]}
    assert rows["pgbench.tps"]["previous"] is not None
    assert rows["pgbench.tps"]["change_percent"] < -20 and rows["pgbench.tps"]["worse"]
    assert "pgbench.tps regressed" in " ".join(titles(report, "P3"))
    assert len(json.loads(stack.sh(f"cat {HISTORY}").stdout)) == len(history) + 1


def test_the_play_fails_at_the_chosen_level_and_check_mode_writes_nothing(stack, eol_table):
    result = stack.run("quarterly_review", tags="dependencies",
                       extravars={"quarterly_review_fail_priority": "P2",
                                  "quarterly_review_eol_file": str(eol_table)})
    assert result.rc != 0
    failed = result.failed_tasks()
    assert [f["task"] for f in failed] == ["Fail when a finding is as urgent as "
                                           "quarterly_review_fail_priority"]
    assert "past its end of life" in failed[0]["res"]["msg"]

    before = stack.sh("stat -c %Y /var/lib/bmops/reports/review-latest.json").stdout
    # the tools' files of the earlier real run, and nothing named like a scratch directory
    state = "find /var/lib/bmops/review -type f -exec sha256sum {} + | sort"
    state_before = stack.sh(state).stdout
    assert "lynis-report.dat" in state_before and "testssl.json" in state_before
    result = stack.run("quarterly_review", cmdline="--check", extravars=FAIL_NONE)
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed_tasks() == []
    summary = result.artifact_data["bmops_review"]
    assert set(summary["parts"]) == {"security", "dependencies"}  # no benchmark in check mode
    # check mode still ran Lynis and testssl.sh, into a scratch directory now gone
    assert any(t.startswith("Lynis: ") for t in summary["findings"]), summary["findings"]
    assert stack.sh("stat -c %Y /var/lib/bmops/reports/review-latest.json").stdout == before
    assert stack.sh(state).stdout == state_before
    assert stack.sh("ls -d /tmp/bmops-review-* 2>/dev/null || true").stdout.strip() == ""
