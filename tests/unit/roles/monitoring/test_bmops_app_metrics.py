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


def test_output_is_valid_exposition(monkeypatch, tmp_path):
    items = [dict(id="c1", service="backend", running=True, health="healthy", restarts=2),
             dict(id="c2", service="db", running=True, health=None, restarts=0)]
    monkeypatch.setattr(tool, "containers", lambda project: items)

    def fake_psql(container, user, db, sql):
        return [["10", "9", "1"]] if "backup_jobs" in sql else [["t1", "/srv", "100", "80"]]

    monkeypatch.setattr(tool, "psql", fake_psql)
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
