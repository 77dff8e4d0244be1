# SPDX-License-Identifier: Apache-2.0
"""The backend adapter (docs/backend.md): the daily check and the audit-log
retention against a second schema and a second log format, configured only
through an inventory (host_vars), with no extra vars.

The second backend lives beside the reference app on the shared stack: schema
``ops`` in the same database, and a container ``legacy-worker`` in the Compose
project that logs ``<date> <time> E|W|I message``. Both are removed at the end.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import run_playbook

pytestmark = pytest.mark.integration

SCHEMA = """
DROP SCHEMA IF EXISTS ops CASCADE;
CREATE SCHEMA ops;
CREATE TABLE ops.task_history (
  task_id serial PRIMARY KEY, task_name text NOT NULL, outcome text NOT NULL,
  completed_at timestamptz NOT NULL, reason text);
INSERT INTO ops.task_history (task_name, outcome, completed_at, reason) VALUES
  ('nas-a', 'OK', now() - interval '1 hour', NULL),
  ('nas-b', 'OK', now() - interval '2 hours', NULL),
  ('nas-c', 'OK', now() - interval '3 hours', NULL),
  ('tape-1', 'NG', now() - interval '4 hours', 'tape drive offline'),
  ('old-ng', 'NG', now() - interval '30 hours', 'outside the window');
CREATE TABLE ops.volumes (label text, mountpoint text, size_kb bigint, used_kb bigint);
INSERT INTO ops.volumes VALUES ('vol-a', '/mnt/a', 1000, 960), ('vol-b', '/mnt/b', 1000, 100);
CREATE TABLE ops.audit_trail (entry_id bigserial PRIMARY KEY, logged_at timestamptz NOT NULL);
INSERT INTO ops.audit_trail (logged_at)
  SELECT now() - interval '400 days' - g * interval '1 minute' FROM generate_series(1, 7) g;
INSERT INTO ops.audit_trail (logged_at) VALUES (now() - interval '10 days'), (now());
"""

# Configured only here: these host_vars are the whole adapter (docs/backend.md).
ADAPTER = {
    "bm_backend_jobs_summary_sql": (
        "SELECT count(*) AS total,\n"
        "       count(*) FILTER (WHERE outcome = 'OK') AS succeeded,\n"
        "       count(*) FILTER (WHERE outcome = 'NG') AS failed\n"
        "  FROM ops.task_history\n"
        " WHERE completed_at >= now() - make_interval(hours => %(window_hours)s)"),
    "bm_backend_failed_jobs_sql": (
        "SELECT task_id AS id, task_name AS name, reason AS error, completed_at AS finished_at\n"
        "  FROM ops.task_history\n"
        " WHERE outcome = 'NG'\n"
        "   AND completed_at >= now() - make_interval(hours => %(window_hours)s)\n"
        " ORDER BY completed_at DESC LIMIT %(limit)s"),
    "bm_backend_storage_sql": (
        "SELECT label AS name, mountpoint AS path, size_kb * 1024 AS capacity_bytes,\n"
        "       used_kb * 1024 AS used_bytes FROM ops.volumes ORDER BY label"),
    "bm_backend_audit_table": "ops.audit_trail",
    "bm_backend_audit_time_column": "logged_at",
    "bm_backend_audit_key_column": "entry_id",
    "bm_backend_log_error_pattern": r"^\S+ \S+ E ",
    "bm_backend_log_warning_pattern": r"^\S+ \S+ W ",
    "bm_check_log_services": ["legacy-worker"],
}

# "ERROR-free" would be an error to the automatic detection: with the patterns
# set, only they decide.
WORKER_LOG = ("2026-12-02 03:00:01 E [worker] disk full on /mnt/a\n"
              "2026-12-02 03:00:02 W [worker] retrying in 30 s\n"
              "2026-12-02 03:00:03 I [worker] ERROR-free run of nas-a\n"
              "2026-12-02 03:00:04 E [worker] tape drive offline\n")


def adapter_inventory(stack, directory):
    """The stack's inventory (hosts, demo group_vars, any rotated passwords)
    plus the adapter in host_vars."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(stack.inventory / "hosts.yml", directory / "hosts.yml")
    (directory / "group_vars").symlink_to((stack.inventory / "group_vars").resolve())
    host_vars = dict(ADAPTER)
    rotated = stack.inventory / "host_vars" / f"{stack.host}.yml"
    if rotated.exists():
        host_vars.update(yaml.safe_load(rotated.read_text()) or {})
    (directory / "host_vars").mkdir()
    path = directory / "host_vars" / f"{stack.host}.yml"
    path.write_text(yaml.safe_dump(host_vars), encoding="utf-8")
    path.chmod(0o600)
    return directory


@pytest.fixture(scope="module")
def second_backend(stack, tmp_path_factory):
    stack.psql(SCHEMA)
    image = stack.sh("docker inspect --format '{{.Config.Image}}' "
                     "$(docker ps -q --filter label=com.docker.compose.service=backend "
                     "--filter label=com.docker.compose.project=backup-mgmt)").stdout.strip()
    stack.sh(f"cat > /tmp/bmops-it-worker.log <<'EOF'\n{WORKER_LOG}EOF\n"
             "docker rm -f bmops-it-legacy-worker >/dev/null 2>&1 || true\n"
             "docker run -d --name bmops-it-legacy-worker --entrypoint sh "
             "--label com.docker.compose.project=backup-mgmt "
             "--label com.docker.compose.service=legacy-worker "
             "-v /tmp/bmops-it-worker.log:/worker.log:ro "
             f"{image} -c 'cat /worker.log; exec sleep infinity' >/dev/null")
    inventory = adapter_inventory(stack, tmp_path_factory.mktemp("adapter") / "inventory")
    try:
        yield inventory
    finally:
        stack.sh("docker rm -f bmops-it-legacy-worker >/dev/null 2>&1 || true")
        stack.psql("DROP SCHEMA IF EXISTS ops CASCADE;")


def test_daily_check_reads_a_second_schema_and_log_format(stack, second_backend):
    result = run_playbook("daily_check", second_backend, stack.workdir / "adapter-daily")
    assert result.rc != 0, "a 75 % success rate and a 96 % full volume are breaches"
    data = json.loads(stack.sh("cat /var/lib/bmops/reports/daily-latest.json").stdout)
    facts = data["facts"]
    assert facts["errors"] == [], facts["errors"]
    jobs = facts["jobs"]
    assert (jobs["total"], jobs["succeeded"], jobs["failed"]) == (4, 3, 1), jobs
    assert [j["name"] for j in jobs["failed_jobs"]] == ["tape-1"]
    assert jobs["failed_jobs"][0]["error"] == "tape drive offline"
    targets = {t["name"]: t["used_percent"] for t in facts["storage"]["targets"]}
    assert targets == {"vol-a": 96.0, "vol-b": 10.0}
    worker = facts["logs"]["services"]["legacy-worker"]
    assert (worker["error"], worker["warning"], worker["lines"]) == (2, 1, 4), worker
    assert worker["samples"]["error"][-1].endswith("tape drive offline")
    checks = {c["metric"]: c for c in data["checks"]}
    assert checks["job_success_rate"]["value"] == 75.0
    assert checks["job_success_rate"]["status"] == "breach"
    assert checks["failed_jobs"]["status"] == "warn"  # "0 件が理想": a warning
    storage = [c for c in data["checks"] if c["metric"] == "storage_used_percent"
               and c["status"] == "breach"]
    assert storage and "vol-a" in json.dumps(storage)
    assert checks["error_log_lines"]["status"] == "warn"
    message = result.failed_tasks()[0]["res"]["msg"]
    assert "job success rate" in message and "75" in message, message


def test_audit_retention_uses_the_configured_table(stack, second_backend):
    result = run_playbook("monthly_maintenance", second_backend,
                          stack.workdir / "adapter-retention", tags="retention")
    assert result.rc == 0, result.stdout[-3000:]
    retention = json.loads(stack.sh(
        "cat /var/lib/bmops/reports/maintenance-latest.json").stdout)["steps"]["retention"]
    assert retention["table"] == "ops.audit_trail"
    assert retention["deleted"] == 7
    assert stack.psql("SELECT count(*) FROM ops.audit_trail") == "2"
