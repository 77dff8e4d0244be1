# SPDX-License-Identifier: Apache-2.0
"""Operations playbooks against the converged stack (issue 8).

incident_triage (db stopped, crash-looping backend, a query blocked on a lock),
log_level (round trip with the automatic revert), restart_services (one service,
refusals, the host lock), monthly_maintenance (VACUUM, audit-log retention,
restore test). Every test leaves the stack healthy.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REPORTS = "/var/lib/bmops/reports"
TOOL = "/usr/local/sbin/bmops-backup"
BACKUP_DIR = "/backup/db"


# ---------------------------------------------------------------- helpers

def report(stack, name: str) -> dict:
    return json.loads(stack.sh(f"cat {REPORTS}/{name}").stdout)


def stats(result, key: str):
    assert key in result.artifact_data, (result.rc, result.stdout[-3000:])
    return result.artifact_data[key]


def assert_ok(result) -> None:
    assert result.rc == 0, result.stdout[-4000:]


@pytest.fixture(scope="module")
def ops(stack):
    """The converged stack. site.yml installs what the operations need:
    python3-psycopg (bm_*_info modules, role app_stack) and bmops-backup (host
    lock, restore test; role db_backup)."""
    assert stack.sh("python3 -c 'import psycopg'", check=False).returncode == 0, \
        "site.yml did not install python3-psycopg on the host"
    assert stack.sh(f"test -x {TOOL}", check=False).returncode == 0, \
        f"site.yml did not install {TOOL}"
    stack.wait_ready()
    return stack


# ---------------------------------------------------------------- incident triage

def test_triage_healthy_is_read_only_and_check_mode_safe(ops):
    result = ops.run("incident_triage")
    assert_ok(result)
    assert result.changed_tasks() == []
    triage = stats(result, "bmops_triage")
    assert triage["detected"] == [], triage
    doc = report(ops, "triage-latest.json")
    # earlier tests may have left recent log lines: "suspected" at most
    assert doc["result"]["status"] in ("ok", "attention")
    assert {v["status"] for v in doc["result"]["verdicts"]} <= {"clear", "suspected"}
    assert doc["facts"]["pg"]["connections"]["total"] >= 1
    md = ops.sh(f"cat {REPORTS}/triage-latest.md").stdout
    assert "| DB connection errors | **" in md
    if doc["facts"]["nginx"]["present"]:
        assert "requests" in doc["facts"]["nginx"]["access"]
        assert "Error-log tail" in md
    else:
        assert "Not present on this host" in md and "skipped" in md
    draft = ops.sh(f"ls {REPORTS}/postmortem-draft-*.md | tail -1").stdout.strip()
    text = ops.sh(f"cat {draft}").stdout
    assert re.search(r"^## Timeline \((Etc/)?UTC\)$", text, re.M), text[:800]
    assert re.search(r"^\| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\+00:00\) \| ", text, re.M)

    checked = ops.run("incident_triage", cmdline="--check")
    assert_ok(checked)
    assert checked.changed_tasks() == []


def test_triage_db_stopped_is_db_connection_errors(ops):
    ops.compose("stop", "db")
    try:
        result = ops.run("incident_triage")
        assert_ok(result)
        assert result.changed_tasks() == []
        triage = stats(result, "bmops_triage")
        assert "DB connection errors" in triage["detected"], triage
        doc = report(ops, "triage-latest.json")
        db = next(v for v in doc["result"]["verdicts"] if v["id"] == "db_connection")
        assert any("db container" in e and "exited" in e for e in db["evidence"]), db
        assert any("Cannot connect to PostgreSQL" in e for e in db["evidence"]), db
        assert any("docker compose start db" in a for a in db["actions"])
        timeline = doc["postmortem"]["timeline"]
        assert timeline[-1]["event"].startswith("incident triage ran: DB connection errors")
    finally:
        ops.compose("start", "db")
        ops.wait_ready()


def test_triage_crash_looping_backend_is_container_not_starting(ops):
    ops.sh("cat > /opt/backup-mgmt/compose.override.yaml <<'EOF'\n"
           "services:\n  backend:\n    environment:\n      JOB_FAILURE_RATIO: bogus\nEOF")
    try:
        ops.compose("up", "-d", "--no-deps", "backend")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = ops.sh("docker inspect -f '{{.RestartCount}} {{.State.Status}}' "
                         "backup-backend").stdout.split()
            if int(out[0]) >= 2:
                break
            time.sleep(1)
        result = ops.run("incident_triage")
        assert_ok(result)
        triage = stats(result, "bmops_triage")
        assert "Container not starting" in triage["detected"], triage
        assert "API slow" not in triage["detected"], triage  # down, not slow
        doc = report(ops, "triage-latest.json")
        assert doc["result"]["failing_services"][0] == "backend", doc["result"]
        verdict = next(v for v in doc["result"]["verdicts"]
                       if v["id"] == "container_not_starting")
        assert any(e.startswith("backend (backup-backend)") for e in verdict["evidence"])
        assert any("JOB_FAILURE_RATIO" in e for e in verdict["evidence"]), verdict
        assert "playbooks/restart_services.yml -e restart_service=backend" in verdict["actions"]
    finally:
        ops.sh("rm -f /opt/backup-mgmt/compose.override.yaml")
        ops.compose("up", "-d", "--no-deps", "--wait", "backend")
        ops.wait_ready()


def test_triage_blocked_query_is_api_slow(ops):
    # One session holds a lock; a second one waits for it (a slow API's usual cause).
    ops.compose("exec", "-d", "db", "psql", "-U", "postgres", "-d", "backup_mgmt", "-c",
                "BEGIN; LOCK TABLE storage_targets IN ACCESS EXCLUSIVE MODE; "
                "SELECT pg_sleep(120);")
    time.sleep(1)
    ops.compose("exec", "-d", "db", "psql", "-U", "postgres", "-d", "backup_mgmt", "-c",
                "SELECT count(*) AS bmops_it_blocked FROM storage_targets;")
    try:
        time.sleep(4)
        result = ops.run("incident_triage",
                         extravars={"incident_triage_thresholds": {"long_query_seconds": 2}})
        assert_ok(result)
        assert "API slow" in stats(result, "bmops_triage")["detected"]
        doc = report(ops, "triage-latest.json")
        queries = doc["facts"]["pg"]["long_running_queries"]
        blocked = [q for q in queries if "bmops_it_blocked" in q["query"]]
        assert blocked and blocked[0]["wait_event_type"] == "Lock", queries
        slow = next(v for v in doc["result"]["verdicts"] if v["id"] == "api_slow")
        assert any("waiting on Lock" in e and "bmops_it_blocked" in e for e in slow["evidence"])
        md = ops.sh(f"cat {REPORTS}/triage-latest.md").stdout
        assert "bmops_it_blocked" in md
    finally:
        ops.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE query ~ '(pg_sleep\\(120\\)|bmops_it_blocked)' "
                 "AND pid <> pg_backend_pid();")
        ops.wait_ready()


def test_triage_nginx_5xx_rate_when_nginx_is_present(ops):
    if ops.sh("test -f /var/log/nginx/access.log", check=False).returncode != 0:
        pytest.skip("nginx is not deployed on this host (site.yml without nginx_proxy)")
    ops.compose("stop", "backend")
    try:
        # 30 requests through nginx while the backend is down: 502 each
        ops.sh("python3 - <<'EOF'\n"
               "import ssl, urllib.request, urllib.error\n"
               "ctx = ssl._create_unverified_context()\n"
               "for _ in range(30):\n"
               "    req = urllib.request.Request('https://127.0.0.1/health/ready',\n"
               "                                 headers={'Host': 'backup-mgmt.demo.test'})\n"
               "    try:\n"
               "        urllib.request.urlopen(req, context=ctx, timeout=5)\n"
               "    except urllib.error.HTTPError:\n"
               "        pass\n"
               "EOF")
        result = ops.run("incident_triage")
        assert_ok(result)
        doc = report(ops, "triage-latest.json")
        access = doc["facts"]["nginx"]["access"]
        assert access["status_5xx"] >= 30, access
        slow = next(v for v in doc["result"]["verdicts"] if v["id"] == "api_slow")
        assert any("answered 5xx" in e for e in slow["evidence"]), slow
        assert "Access-log tail" in ops.sh(f"cat {REPORTS}/triage-latest.md").stdout
    finally:
        ops.compose("start", "backend")
        ops.wait_ready()


# ---------------------------------------------------------------- log level

def backend_level_lines(stack) -> list[str]:
    out = stack.compose("logs", "--no-color", "--no-log-prefix", "backend").stdout
    return [line for line in out.splitlines() if "log level changed to" in line]


def test_log_level_round_trip_with_automatic_revert(ops):
    before = len(backend_level_lines(ops))
    result = ops.run("log_level", extravars={"log_level": "debug",
                                             "log_level_revert_seconds": 20})
    assert_ok(result)
    level = stats(result, "bmops_log_level")
    assert level["requested"] == "DEBUG" and level["reported"] == "DEBUG", level
    assert level["revert_to"] == "INFO" and level["revert_at"].endswith("UTC")
    assert ops.sh("cat /opt/backup-mgmt/run/log_level").stdout.strip() == "DEBUG"
    assert ops.sh("systemctl is-active bmops-log-level-revert.timer",
                  check=False).stdout.strip() == "active"
    # nobody runs the play again: the timer puts INFO back
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = backend_level_lines(ops)[before:]
        if lines and lines[-1].endswith("log level changed to INFO"):
            break
        time.sleep(2)
    lines = backend_level_lines(ops)[before:]
    assert [line.rsplit(" ", 1)[-1] for line in lines] == ["DEBUG", "INFO"], lines
    assert ops.sh("cat /opt/backup-mgmt/run/log_level").stdout.strip() == "INFO"
    assert ops.sh("systemctl is-enabled bmops-log-level-revert.timer",
                  check=False).stdout.strip() == "disabled"

    again = ops.run("log_level")
    assert_ok(again)
    assert stats(again, "bmops_log_level")["reported"] == "INFO"
    assert stats(again, "bmops_log_level")["revert_at"] is None
    assert again.changed_tasks() == []


def test_log_level_rerun_replaces_the_deadline_and_info_disarms(ops):
    first = ops.run("log_level", extravars={"log_level": "DEBUG"})
    assert_ok(first)
    second = ops.run("log_level", extravars={"log_level": "DEBUG",
                                             "log_level_revert_seconds": 600})
    assert_ok(second)
    timer = ops.sh("cat /etc/systemd/system/bmops-log-level-revert.timer").stdout
    assert f"OnCalendar={stats(second, 'bmops_log_level')['revert_at']}" in timer
    off = ops.run("log_level", extravars={"log_level": "INFO"})
    assert_ok(off)
    assert ops.sh("systemctl is-active bmops-log-level-revert.timer",
                  check=False).stdout.strip() == "inactive"
    assert stats(off, "bmops_log_level")["reported"] == "INFO"


# ---------------------------------------------------------------- restart

def started_at(stack, container: str) -> str:
    return stack.sh(f"docker inspect -f '{{{{.State.StartedAt}}}}' {container}").stdout.strip()


def test_restart_one_service_is_health_checked(ops):
    before = started_at(ops, "backup-backend")
    result = ops.run("restart_services", extravars={"restart_service": "backend"})
    assert_ok(result)
    assert stats(result, "bmops_restart") == {"restarted": "backend", "started": "",
                                              "ready_status": 200,
                                              "ready_body": {"status": "ok",
                                                             "checks": {"db": "ok",
                                                                        "redis": "ok"}}}
    assert started_at(ops, "backup-backend") != before
    assert json.loads(ops.sh(f"{TOOL} lock status").stdout)["free"] is True


def test_start_service_starts_a_stopped_db_and_leaves_a_running_one(ops):
    """The manual's `docker compose start db` (3.3): never a restart of a running db."""
    ops.compose("stop", "db")
    try:
        result = ops.run("restart_services", extravars={"start_service": "db"})
    finally:
        ops.compose("start", "db")  # whatever happened, the stack goes on
    assert_ok(result)
    assert stats(result, "bmops_restart")["started"] == "db"
    assert stats(result, "bmops_restart")["ready_status"] == 200
    before = started_at(ops, "backup-mgmt-db-1")
    result = ops.run("restart_services", extravars={"start_service": "db"})
    assert_ok(result)
    assert stats(result, "bmops_restart")["started"] == ""
    assert started_at(ops, "backup-mgmt-db-1") == before
    assert json.loads(ops.sh(f"{TOOL} lock status").stdout)["free"] is True


def test_restart_refuses_without_a_clear_request(ops):
    for extravars in ({}, {"restart_service": "backend", "restart_confirm_full": True},
                      {"restart_service": "nginx"}, {"start_service": "db",
                                                     "restart_service": "db"}):
        result = ops.run("restart_services", extravars=extravars)
        assert result.rc != 0
        assert "Name one service" in result.stdout


def test_restart_waits_for_nobody_when_the_lock_is_held(ops):
    token = json.loads(ops.sh(f"{TOOL} lock acquire --owner it-test --ttl 120").stdout)["token"]
    try:
        before = started_at(ops, "backup-mgmt-celery-1")
        result = ops.run("restart_services", extravars={"restart_service": "celery"})
        assert result.rc != 0
        assert "holds /run/bmops/bmops.lock" in result.stdout
        assert started_at(ops, "backup-mgmt-celery-1") == before
    finally:
        ops.sh(f"BMOPS_LOCK_TOKEN={token} {TOOL} lock release")


def container_id(stack, container: str) -> str:
    return stack.sh(f"docker inspect -f '{{{{.Id}}}}' {container}").stdout.strip()


def test_full_restart_down_up_keeps_the_logs(ops):
    """The manual's full restart (down, up -d) recreates every container; the
    logs of the removed ones stay in the journal (manual 5.1, 30 days)."""
    old_backend = container_id(ops, "backup-backend")
    result = ops.run("restart_services", extravars={"restart_confirm_full": True})
    assert_ok(result)
    assert stats(result, "bmops_restart")["ready_status"] == 200
    states = ops.compose("ps", "--format", "{{.Service}} {{.Health}}").stdout.split("\n")
    assert sorted(s.split()[0] for s in states if s) == [
        "backend", "celery", "celery-beat", "db", "redis"]
    assert container_id(ops, "backup-backend") != old_backend, "down/up did not recreate"
    old_lines = ops.sh(f"journalctl CONTAINER_ID_FULL={old_backend} -o cat --no-pager").stdout
    assert "starting backend" in old_lines, old_lines[-2000:]
    by_name = ops.sh("journalctl -t backup-backend -o cat --no-pager").stdout
    assert by_name.count("starting backend") >= 2, by_name[-2000:]
    # the manual's command reads the running container's lines
    assert "starting backend" in ops.sh("docker logs backup-backend 2>&1").stdout


# ---------------------------------------------------------------- monthly maintenance

def test_vacuum_reduces_dead_tuples(ops):
    ops.psql("DROP TABLE IF EXISTS bmops_it_vacuum; "
             "CREATE TABLE bmops_it_vacuum(id int PRIMARY KEY, pad text) "
             "WITH (autovacuum_enabled = false); "
             "INSERT INTO bmops_it_vacuum SELECT g, repeat('x', 200) "
             "FROM generate_series(1, 20000) g; "
             "DELETE FROM bmops_it_vacuum WHERE id > 5000;")
    time.sleep(2)  # PostgreSQL publishes table statistics about once a second
    try:
        result = ops.run("monthly_maintenance", tags="vacuum")
        assert_ok(result)
        vacuum = report(ops, "maintenance-latest.json")["steps"]["vacuum"]
        table = next(t for t in vacuum["tables"] if t["table"] == "public.bmops_it_vacuum")
        assert table["dead_before"] >= 15000, table
        assert table["dead_after"] == 0, table
        assert table["live_after"] == 5000
        assert table["last_vacuum"] is not None
        assert vacuum["dead_tuples_after"] < vacuum["dead_tuples_before"]
        assert "## VACUUM ANALYZE" in ops.sh(f"cat {REPORTS}/maintenance-latest.md").stdout
    finally:
        ops.psql("DROP TABLE IF EXISTS bmops_it_vacuum;")


def test_audit_log_retention_deletes_old_rows_in_batches(ops):
    ops.psql("INSERT INTO audit_logs(created_at, actor, action, detail) "
             "SELECT now() - interval '400 days' - g * interval '1 minute', 'it', 'old', '{}' "
             "FROM generate_series(1, 12000) g; "
             "INSERT INTO audit_logs(created_at, actor, action, detail) "
             "SELECT now() - interval '364 days', 'it', 'recent', '{}' "
             "FROM generate_series(1, 10) g;")
    try:
        result = ops.run("monthly_maintenance", tags="retention",
                         extravars={"maintenance_audit_batch_size": 5000})
        assert_ok(result)
        retention = report(ops, "maintenance-latest.json")["steps"]["retention"]
        assert retention["deleted"] == 12000
        assert retention["batches"] == 3
        assert ops.psql("SELECT count(*) FROM audit_logs "
                        "WHERE created_at < now() - interval '365 days'") == "0"
        assert ops.psql("SELECT count(*) FROM audit_logs WHERE action = 'recent'") == "10"
        rerun = ops.run("monthly_maintenance", tags="retention")
        assert_ok(rerun)
        assert report(ops, "maintenance-latest.json")["steps"]["retention"]["deleted"] == 0
        assert rerun.changed_tasks() == []
    finally:
        ops.psql("DELETE FROM audit_logs WHERE actor = 'it';")


def test_patches_wait_for_approval(ops):
    """Manual 2.1 patching is a staffed task: without maintenance_patches_approved the
    step lists the pending updates (the weekly check's kind) and applies nothing."""
    before = ops.sh("dpkg-query -W -f '${Package} ${Version}\n' | sha256sum").stdout
    result = ops.run("monthly_maintenance", tags="patches")
    assert_ok(result)
    patches = report(ops, "maintenance-latest.json")["steps"]["patches"]
    assert patches["approved"] is False and patches["changed"] is False
    assert patches["upgrade"] == "dist" and patches["backup"] is None
    assert ops.sh("dpkg-query -W -f '${Package} ${Version}\n' | sha256sum").stdout == before
    if patches["pending"]:
        assert "not applied: patching is a staffed task" in result.stdout
    assert json.loads(ops.sh(f"{TOOL} lock status").stdout)["free"] is True


def test_restore_test_step(ops):
    # untagged, as the cron job's: restore-test checks what a restore would pick
    ops.sh(f"{TOOL} backup >/dev/null")
    result = ops.run("monthly_maintenance", tags="restore_test,logrotate")
    assert_ok(result)
    steps = report(ops, "maintenance-latest.json")["steps"]
    assert steps["restore_test"]["rc"] == 0 and steps["restore_test"]["failed"] is False
    assert steps["logrotate"]["docker_log_issues"] == []
    assert steps["logrotate"]["docker_log_config"]["type"] == "journald"
    assert int(steps["logrotate"]["journal_keep_days"]) == 30
    assert json.loads(ops.sh(f"{TOOL} lock status").stdout)["free"] is True


def image_id(stack, ref: str) -> str:
    return stack.sh(f"docker image inspect -f '{{{{.Id}}}}' {ref}").stdout.strip()


def running_image(stack, container: str) -> str:
    return stack.sh(f"docker inspect -f '{{{{.Image}}}}' {container}").stdout.strip()


def test_images_update_one_service_and_roll_back_a_broken_one(ops):
    original = image_id(ops, "bmops/redis:7")
    try:
        # a "patched" image under the same tag: recreated, healthy, kept
        ops.sh("printf 'FROM bmops/redis:7\\nLABEL bmops.it=patched\\n' "
               "| docker build -q -t bmops/redis:7 - >/dev/null")
        patched = image_id(ops, "bmops/redis:7")
        assert patched != original
        result = ops.run("monthly_maintenance", tags="images",
                         extravars={"maintenance_image_refresh": "none",
                                    "maintenance_image_services": ["redis"]})
        assert_ok(result)
        images = report(ops, "maintenance-latest.json")["steps"]["images"]
        assert images["services"] == [{"service": "redis", "image": "bmops/redis:7",
                                       "from": original, "to": patched, "result": "updated"}]
        assert running_image(ops, "backup-mgmt-redis-1") == patched
        ops.wait_ready()

        # a broken image: the service fails, the previous image gets its tag back
        ops.sh("printf 'FROM bmops/redis:7\\nENTRYPOINT [\"sh\", \"-c\", \"exit 1\"]\\n' "
               "| docker build -q -t bmops/redis:7 - >/dev/null")
        broken = image_id(ops, "bmops/redis:7")
        result = ops.run("monthly_maintenance", tags="images",
                         extravars={"maintenance_image_refresh": "none",
                                    "maintenance_image_services": ["redis"],
                                    "maintenance_image_wait_timeout": 30})
        assert result.rc != 0
        assert "step(s) failed: images" in result.stdout
        images = report(ops, "maintenance-latest.json")["steps"]["images"]
        assert images["services"][0]["result"] == "rolled back"
        assert images["services"][0]["to"] == broken
        assert image_id(ops, "bmops/redis:7") == patched
        assert running_image(ops, "backup-mgmt-redis-1") == patched
        ops.wait_ready()
        assert json.loads(ops.sh(f"{TOOL} lock status").stdout)["free"] is True
    finally:
        ops.sh(f"docker tag {original} bmops/redis:7")
        ops.compose("up", "-d", "--no-deps", "--wait", "redis")
        ops.wait_ready()


# ---------------------------------------------------------------- DR drill

def test_dr_drill_restores_into_a_fresh_stack_and_reports_rto_rpo(ops):
    # untagged, as the cron job's: the drill restores what a restore would pick
    ops.sh(f"{TOOL} backup >/dev/null")
    live_started = started_at(ops, "backup-backend")
    result = ops.run("dr_drill")
    assert_ok(result)
    drill = stats(result, "bmops_dr_drill")
    assert 0 < int(drill["rto_seconds"]) <= int(drill["rto_target_seconds"])
    assert 0 <= int(drill["rpo_seconds"]) < 3600
    assert drill["rto_ok"] and drill["rpo_ok"]
    doc = report(ops, "dr-drill-latest.json")
    assert doc["result"]["restore"]["ok"] is True
    assert doc["result"]["ready"]["status"] == "ok"
    assert "RTO" in ops.sh(f"cat {REPORTS}/dr-drill-latest.md").stdout
    # the drill stack is gone, the live one untouched
    assert "backup-mgmt-drill" not in ops.sh("docker ps -a --format '{{.Names}}'").stdout
    assert ops.sh("test -e /opt/backup-mgmt-drill", check=False).returncode != 0
    assert started_at(ops, "backup-backend") == live_started
    assert ops.ready_status() == 200


def test_check_mode_changes_nothing(ops):
    before = started_at(ops, "backup-backend")
    result = ops.run("restart_services", extravars={"restart_service": "backend"},
                     cmdline="--check")
    assert_ok(result)
    assert started_at(ops, "backup-backend") == before
    level = ops.sh("cat /opt/backup-mgmt/run/log_level").stdout
    result = ops.run("log_level", extravars={"log_level": "DEBUG"}, cmdline="--check")
    assert_ok(result)
    assert ops.sh("cat /opt/backup-mgmt/run/log_level").stdout == level
    result = ops.run("monthly_maintenance", tags="vacuum,retention,logrotate",
                     cmdline="--check")
    assert_ok(result)
    assert json.loads(ops.sh(f"{TOOL} lock status").stdout)["free"] is True


@pytest.mark.parametrize("playbook", ["monthly_maintenance", "backup_db", "restore_db",
                                      "dr_drill"])
def test_every_playbook_runs_through_in_check_mode(ops, playbook):
    """Issue 14 item 10: each playbook with --check (every tag) on the converged host
    finishes and changes nothing: same backups, same containers, lock free."""
    backups = ops.sh(f"ls {BACKUP_DIR}").stdout
    containers = ops.sh("docker ps -q --no-trunc | sort").stdout
    result = ops.run(playbook, cmdline="--check")
    assert_ok(result)
    assert ops.sh(f"ls {BACKUP_DIR}").stdout == backups
    assert ops.sh("docker ps -q --no-trunc | sort").stdout == containers
    assert json.loads(ops.sh(f"{TOOL} lock status").stdout)["free"] is True
