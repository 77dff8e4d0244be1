# SPDX-License-Identifier: Apache-2.0
"""bmops-app-metrics: the same queries and log-level rule as the daily check."""

from __future__ import annotations

import importlib.util
import json

import pytest
from helpers import ROOT

TOOL = ROOT / "roles" / "monitoring" / "files" / "bmops-app-metrics.py"
spec = importlib.util.spec_from_file_location("bmops_app_metrics", TOOL)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def test_the_sql_is_the_daily_checks():
    from ansible.module_utils import bm_health
    assert tool.JOBS_SUMMARY_SQL == bm_health.JOBS_SUMMARY_SQL
    assert tool.STORAGE_SQL == bm_health.STORAGE_SQL


@pytest.mark.parametrize("line", [
    "ERROR boom", "INFO no error here", '{"level": "error", "msg": "x"}',
    '{"levelname": "WARNING"}', "level=error msg=x", "[CRITICAL] down", "plain", "",
    '{"msg": "no level"}', "WARN low disk", "fatal: lowercase is not a level"])
def test_line_level_agrees_with_the_daily_check(line):
    from ansible.module_utils import bm_health
    assert tool.line_level(line) == bm_health.line_level(line)


def fake_stack(monkeypatch, items, slots=(), jobs=("0", "0", "0"), storage=()):
    """containers() gives ITEMS; psql answers the slot list with SLOTS (raised when it is
    an exception), the jobs summary with JOBS and any other query with STORAGE."""
    monkeypatch.setattr(tool, "containers", lambda project: items)

    def fake_psql(container, user, db, sql):
        if "pg_replication_slots" in sql:
            if isinstance(slots, Exception):
                raise slots
            return [list(row) for row in slots]
        return [list(jobs)] if "backup_jobs" in sql else [list(row) for row in storage]

    monkeypatch.setattr(tool, "psql", fake_psql)


def test_output_is_valid_exposition(monkeypatch, tmp_path):
    items = [dict(id="c1", service="backend", running=True, health="healthy", restarts=2),
             dict(id="c2", service="db", running=True, health=None, restarts=0)]
    # no slot: no WAL series
    fake_stack(monkeypatch, items, jobs=("10", "9", "1"), storage=[("t1", "/srv", "100", "80")])
    cfg = dict(project="p", services=["backend", "celery", "db"], db_user="u", db_name="d",
               paths=[str(tmp_path)], log_services=[], textfile_dir=str(tmp_path))
    text, errors = tool.collect(cfg, now=1000)
    assert errors == {}
    assert 'bmops_container_up{service="celery"} 0' in text
    assert 'bmops_container_restart_count{service="backend"} 2' in text
    assert 'bmops_app_job_success_rate_percent{window_hours="24"} 90.0' in text
    assert 'bmops_app_jobs_failed{window_hours="24"} 1' in text
    assert 'bmops_app_storage_used_percent{kind="target",name="t1"} 80.0' in text
    assert "bmops_app_metrics_timestamp_seconds 1000" in text
    # one HELP/TYPE per metric
    assert text.count("# TYPE bmops_app_storage_used_percent gauge") == 1
    tool.write_atomic(str(tmp_path), "bmops_app.prom", text)
    assert (tmp_path / "bmops_app.prom").read_text() == text
    cfg_path = tmp_path / "c.json"
    cfg_path.write_text(json.dumps(cfg))


def test_no_jobs_leaves_the_rate_absent(monkeypatch):
    monkeypatch.setattr(tool, "containers", lambda project: [
        dict(id="c2", service="db", running=True, health=None, restarts=0)])
    monkeypatch.setattr(tool, "psql", lambda *a: [["0", "0", "0"]] if "backup_jobs" in a[3]
                        else [])
    text, _ = tool.collect(dict(project="p", services=["db"], db_user="u", db_name="d"))
    assert "bmops_app_job_success_rate_percent{" not in text


def test_the_shared_defaults_are_the_reference_sql():
    """bm_backend_*_sql (the inventory's adapter) default to the reference app's queries."""
    import yaml
    from ansible.module_utils import bm_health
    defaults = yaml.safe_load((ROOT / "roles/bmops_common/defaults/main.yml").read_text())

    def words(sql):
        return " ".join(sql.split())

    assert words(defaults["bm_backend_jobs_summary_sql"]) == words(bm_health.JOBS_SUMMARY_SQL)
    assert words(defaults["bm_backend_failed_jobs_sql"]) == words(bm_health.FAILED_JOBS_SQL)
    assert words(defaults["bm_backend_storage_sql"]) == words(bm_health.STORAGE_SQL)


PATTERNS = (r"^\S+ \S+ E\b", r"^\S+ \S+ W\b")


@pytest.mark.parametrize("line", [
    "2026-12-02 10:00:00 E disk gone", "2026-12-02 10:00:00 W slow", "2026-12-02 10:00:00 I ok",
    "ERROR not this format", '{"level": "error"}', ""])
def test_line_level_with_patterns_agrees_with_the_daily_check(line):
    from ansible.module_utils import bm_health
    assert tool.line_level(line, tool.level_patterns(*PATTERNS)) == \
        bm_health.line_level(line, bm_health.level_patterns(*PATTERNS))


def test_configured_queries_and_patterns_are_used(monkeypatch):
    items = [dict(id="c1", service="worker", running=True, health=None, restarts=0),
             dict(id="c2", service="db", running=True, health=None, restarts=0)]
    monkeypatch.setattr(tool, "containers", lambda project: items)
    seen = []

    def fake_psql(container, user, db, sql):
        if "pg_replication_slots" in sql:
            return []
        seen.append(sql)
        return [["4", "3", "1"]]

    class Proc:
        stdout = "x y E one\nx y I two\nERROR three\n"
        stderr = "x y E four\n"

    monkeypatch.setattr(tool, "psql", fake_psql)
    monkeypatch.setattr(tool.subprocess, "run", lambda *a, **k: Proc())
    cfg = dict(project="p", services=[], db_user="u", db_name="d", window_hours=6,
               log_services=["worker"], jobs_summary_sql="SELECT %(window_hours)s FROM runs",
               storage_sql="", log_error_pattern=PATTERNS[0], log_warning_pattern="")
    text, errors = tool.collect(cfg, now=1)
    assert errors == {}
    assert seen == ["SELECT 6 FROM runs"]  # no storage query: the backend has none
    assert 'bmops_app_job_success_rate_percent{window_hours="6"} 75.0' in text
    assert 'bmops_app_error_log_lines{service="worker",window_hours="6"} 2' in text


def test_replication_slots_give_the_wal_they_hold_and_the_free_space(monkeypatch, tmp_path):
    """Issue 16: a slot Barman streams from and one nobody does; the free space is the
    database volume's (the Source of the db container's data mount)."""
    items = [dict(id="c2", service="db", running=True, health=None, restarts=0,
                  mounts={tool.DB_DATA_DIR: str(tmp_path)})]
    fake_stack(monkeypatch, items, slots=[("barman_app1", "1", "16777216", "10720641024", "0.25"),
                                          ("other", "0", "4096", "-1", "0")])
    cfg = dict(project="p", services=["db"], db_user="u", db_name="d", log_services=[])
    text, errors = tool.collect(cfg, now=1)
    assert errors == {}
    assert 'bmops_wal_slot_active{slot="barman_app1"} 1' in text
    assert 'bmops_wal_slot_active{slot="other"} 0' in text
    assert 'bmops_wal_slot_retained_bytes{slot="barman_app1"} 16777216' in text
    assert 'bmops_wal_slot_safe_bytes{slot="barman_app1"} 10720641024' in text
    assert 'bmops_wal_slot_safe_bytes{slot="other"}' not in text  # no limit: no series
    assert 'bmops_wal_write_lag_seconds{slot="barman_app1"} 0.25' in text
    free = [line for line in text.splitlines()
            if line.startswith('bmops_wal_volume_free_bytes{slot="barman_app1"}')]
    assert len(free) == 1 and int(free[0].split()[1]) > 0
    assert 'bmops_app_metrics_error{section="wal"} 0' in text


def test_an_unreadable_slot_list_is_reported_not_fatal(monkeypatch):
    items = [dict(id="c2", service="db", running=True, health=None, restarts=0)]
    fake_stack(monkeypatch, items, slots=RuntimeError("psql failed: permission denied"))
    text, errors = tool.collect(dict(project="p", services=["db"], db_user="u", db_name="d"),
                                now=1)
    assert "permission denied" in errors["wal"]
    assert 'bmops_app_metrics_error{section="wal"} 1' in text
    assert "bmops_app_jobs_finished" in text  # the other sections still measured


def test_a_bad_pattern_is_reported_not_fatal(monkeypatch):
    monkeypatch.setattr(tool, "containers", lambda project: [])
    cfg = dict(project="p", services=[], db_user="u", db_name="d", log_services=["x"],
               log_error_pattern="(unclosed")
    _text, errors = tool.collect(cfg, now=1)
    assert "not a valid regex" in errors["logs"]


def base_backup_link(tmp_path, refresh=300):
    link = dict(ssh_config="/etc/bmops/offsite/ssh_config", ssh_host="bmops-offsite",
                remote="barman-status/app1.status", server="app1",
                cache=str(tmp_path / "barman-status.app1"), refresh_seconds=refresh)
    path = tmp_path / "wal-archive.json"
    path.write_text(json.dumps(link))
    return str(path)


def fake_sftp(monkeypatch, status_text, calls, rc=0):
    """sftp -b -: answers `get REMOTE LOCAL` with STATUS_TEXT written to LOCAL."""
    def run(argv, input=None, **kw):
        import subprocess
        calls.append((argv, input))
        if rc == 0:
            local = input.split()[-1]
            with open(local, "w") as fh:
                fh.write(status_text)
        return subprocess.CompletedProcess(argv, rc, "", "" if rc == 0 else "Connection refused")
    monkeypatch.setattr(tool.subprocess, "run", run)


def test_the_newest_base_backup_comes_from_the_repository_host(monkeypatch, tmp_path):
    import time
    link = base_backup_link(tmp_path)
    calls = []
    now = time.time()  # the copy's age is its file's mtime against now
    fake_sftp(monkeypatch, f"last_end 1700000000\ndone 2\nwritten {now - 100:.0f}\n", calls)
    out = tool.Out()
    tool.base_backups(out, link, now=now)
    text = out.text()
    assert 'bmops_wal_base_backup_end_timestamp_seconds{server="app1"} 1700000000' in text
    assert 'bmops_wal_base_backups{server="app1"} 2' in text
    argv, stdin = calls[0]
    assert argv[:2] == ["sftp", "-q"] and argv[-1] == "bmops-offsite"
    assert stdin.startswith("get barman-status/app1.status ")
    # within refresh_seconds the copy is used again: no new connection
    tool.base_backups(tool.Out(), link, now=now + 60)
    assert len(calls) == 1


def test_a_stale_or_unreachable_status_is_reported_with_what_is_known(monkeypatch, tmp_path):
    link = base_backup_link(tmp_path, refresh=0)
    calls = []
    # the repository host's cron stopped two hours ago
    fake_sftp(monkeypatch, "last_end 1700000000\ndone 1\nwritten 1800000000\n", calls)
    out = tool.Out()
    with pytest.raises(RuntimeError, match="120 min ago"):
        tool.base_backups(out, link, now=1800007200)
    assert 'bmops_wal_base_backups{server="app1"} 1' in out.text()
    # the repository host is unreachable: the last copy is still given, with the error
    fake_sftp(monkeypatch, "", calls, rc=255)
    out = tool.Out()
    with pytest.raises(RuntimeError, match="Connection refused"):
        tool.base_backups(out, link, now=1800000100)
    assert "bmops_wal_base_backup_end_timestamp_seconds" in out.text()


def test_base_backups_are_a_section_of_their_own(monkeypatch, tmp_path):
    fake_stack(monkeypatch, [dict(id="c2", service="db", running=True, health=None,
                                  restarts=0)])
    calls = []
    fake_sftp(monkeypatch, "", calls, rc=255)
    cfg = dict(project="p", services=["db"], db_user="u", db_name="d",
               base_backup_file=base_backup_link(tmp_path))
    text, errors = tool.collect(cfg, now=1000)
    assert "Connection refused" in errors["base_backup"] and list(errors) == ["base_backup"]
    assert 'bmops_app_metrics_error{section="base_backup"} 1' in text
    assert 'bmops_app_metrics_error{section="wal"} 0' in text
    # without point-in-time recovery there is no such section
    text, _ = tool.collect(dict(cfg, base_backup_file=""), now=1000)
    assert 'section="base_backup"' not in text
