# SPDX-License-Identifier: Apache-2.0
"""Tables for filter_plugins/bm_checks.py (daily / weekly evaluation, summary, Prometheus)."""

from __future__ import annotations

# tests/conftest.py puts filter_plugins on sys.path.
import bm_checks
import pytest


def healthy_facts(**override):
    facts = {
        "health": {"ready": {"status": 200, "json": {"status": "ok"}}, "live": {"status": 200},
                   "error": None},
        "jobs": {"window_hours": 24, "total": 20, "succeeded": 20, "failed": 0,
                 "success_rate": 100.0, "failed_jobs": [], "error": None},
        "storage": {"targets": [{"name": "nas1", "used_percent": 50.0}],
                    "filesystems": [{"path": "/backup/db", "used_percent": 10.0}], "error": None},
        "logs": {"window_hours": 24, "services": {
            "backend": {"error": 0, "warning": 2, "lines": 100, "read_error": None,
                        "samples": {"error": [], "warning": []}},
            "celery": {"error": 0, "warning": 0, "lines": 50, "read_error": None,
                       "samples": {"error": [], "warning": []}}}, "error": None},
        "redis": {"method": "docker-exec", "ok": True, "response": "PONG", "error": None},
        "containers": {"items": [
            {"name": "bm-db-1", "service": "db", "state": "running", "running": True,
             "health": "healthy", "restart_count": 0}], "error": None},
        "errors": [],
    }
    for key, value in override.items():
        facts[key] = value
    return facts


def by_metric(checks, metric, item=None):
    found = [c for c in checks if c["metric"] == metric and (item is None or c["item"] == item)]
    assert found, f"no check {metric} {item} in {[c['metric'] for c in checks]}"
    return found[0]


def test_healthy_facts_are_all_ok():
    checks = bm_checks.evaluate_daily(healthy_facts())
    assert {c["status"] for c in checks} == {"ok"}
    assert bm_checks.report_summary(checks)["status"] == "ok"


@pytest.mark.parametrize(
    ("jobs", "thresholds", "status", "message"),
    [
        ({"total": 20, "succeeded": 19, "failed": 1, "success_rate": 95.0}, {}, "ok",
         "job success rate 95.0 % is within the limit >= 95 %"),
        ({"total": 10, "succeeded": 8, "failed": 2, "success_rate": 80.0}, {}, "breach",
         "job success rate 80.0 % is below the limit 95 %"),
        ({"total": 10, "succeeded": 8, "failed": 2, "success_rate": 80.0},
         {"success_rate_min": 75}, "ok", "job success rate 80.0 % is within the limit >= 75 %"),
        ({"total": 0, "succeeded": 0, "failed": 0, "success_rate": None}, {}, "warn",
         "job success rate is undefined: no backup job finished in the last 24 h"),
        ({"total": 0, "succeeded": 0, "failed": 0, "success_rate": None},
         {"success_rate_no_jobs": "breach"}, "breach", "undefined"),
        ({"total": 0, "succeeded": 0, "failed": 0, "success_rate": None},
         {"success_rate_no_jobs": "ok"}, "ok", "undefined"),
    ],
)
def test_job_success_rate(jobs, thresholds, status, message):
    jobs = dict(jobs, window_hours=24, failed_jobs=[], error=None)
    check = by_metric(bm_checks.evaluate_daily(healthy_facts(jobs=jobs), thresholds),
                      "job_success_rate")
    assert check["status"] == status
    assert message in check["message"]


@pytest.mark.parametrize(
    ("failed", "thresholds", "status"),
    # the manual's "0 件が理想": a warning by default, a breach only when asked for
    [(0, {}, "ok"), (1, {}, "warn"), (1, {"failed_jobs_status": "breach"}, "breach"),
     (3, {"failed_jobs_max": 5}, "ok")],
)
def test_failed_jobs(failed, thresholds, status):
    jobs = {"window_hours": 24, "total": 100, "succeeded": 100 - failed, "failed": failed,
            "success_rate": 100.0 - failed, "error": None,
            "failed_jobs": [{"id": i, "name": f"job{i}"} for i in range(failed)]}
    check = by_metric(bm_checks.evaluate_daily(healthy_facts(jobs=jobs), thresholds),
                      "failed_jobs")
    assert check["status"] == status
    if status != "ok":
        assert "job0" in check["message"]


@pytest.mark.parametrize(
    ("used", "status", "message"),
    [(79.99, "ok", "within"), (80.0, "breach", "storage nas1 80.0 % is at or above the limit 80 %"),
     (95.5, "breach", "95.5 %"), (None, "breach", "could not be measured")],
)
def test_storage_targets(used, status, message):
    storage = {"targets": [{"name": "nas1", "used_percent": used}], "filesystems": [],
               "error": None}
    check = by_metric(bm_checks.evaluate_daily(healthy_facts(storage=storage)),
                      "storage_used_percent", "nas1")
    assert check["status"] == status
    assert message in check["message"]


def test_database_down_still_gives_checks_for_every_section():
    error = "Cannot connect to PostgreSQL at 127.0.0.1:5432 as postgres: Connection refused"
    facts = healthy_facts(
        jobs={"error": error},
        storage={"targets": [], "filesystems": [{"path": "/backup", "used_percent": 5.0}],
                 "error": "storage_targets: " + error},
        health={"ready": {"status": 503, "json": {"status": "fail", "failed": ["db"]}},
                "live": {"status": 200}, "error": None},
    )
    checks = bm_checks.evaluate_daily(facts)
    rate = by_metric(checks, "job_success_rate")
    assert rate["status"] == "breach" and "Connection refused" in rate["message"]
    ready = by_metric(checks, "health_ready_status")
    assert ready["message"] == ("GET /health/ready status 503 is not the expected 200 "
                                "(failed: db)")
    assert by_metric(checks, "storage_used_percent", "targets")["status"] == "breach"
    assert by_metric(checks, "filesystem_used_percent", "/backup")["status"] == "ok"


def test_unreachable_backend_is_a_breach():
    facts = healthy_facts(health={"ready": {"status": None, "error": "Connection refused"},
                                  "live": {"status": None}, "error": "unreachable"})
    check = by_metric(bm_checks.evaluate_daily(facts), "health_ready_status")
    assert check["status"] == "breach"
    assert "Connection refused" in check["message"]


@pytest.mark.parametrize(
    ("errors", "read_error", "thresholds", "status"),
    [(0, None, {}, "ok"), (3, None, {}, "warn"),
     (3, None, {"error_logs_status": "breach"}, "breach"),
     (3, None, {"error_logs_max": 5}, "ok"), (0, "docker logs failed", {}, "warn")],
)
def test_error_logs(errors, read_error, thresholds, status):
    logs = {"window_hours": 24, "error": read_error, "services": {"backend": {
        "error": errors, "warning": 0, "lines": 0 if read_error else 10,
        "read_error": read_error, "samples": {"error": [], "warning": []}}}}
    check = by_metric(bm_checks.evaluate_daily(healthy_facts(logs=logs), thresholds),
                      "error_log_lines", "backend")
    assert check["status"] == status
    if status == "breach" and not read_error:
        assert check["message"] == "ERROR log lines (24 h) of backend 3 is above the limit 0"


@pytest.mark.parametrize(
    ("item", "status"),
    [({"running": True, "health": "healthy", "state": "running"}, "ok"),
     ({"running": True, "health": None, "state": "running"}, "ok"),
     ({"running": True, "health": "unhealthy", "state": "running"}, "breach"),
     ({"running": False, "health": None, "state": "exited"}, "breach")],
)
def test_containers(item, status):
    item = dict(item, name="bm-backend-1", service="backend", restart_count=2)
    check = by_metric(bm_checks.evaluate_daily(
        healthy_facts(containers={"items": [item], "error": None})), "container_up", "backend")
    assert check["status"] == status


def test_redis_failure_names_the_reason():
    facts = healthy_facts(redis={"ok": False, "response": "NOAUTH", "error": "NOAUTH needed"})
    check = by_metric(bm_checks.evaluate_daily(facts), "redis_ping")
    assert check["status"] == "breach" and "NOAUTH" in check["message"]


def test_sections_not_gathered_are_skipped_or_unmeasured():
    checks = bm_checks.evaluate_daily({"health": {"ready": {"status": 200}}})
    assert by_metric(checks, "health_ready_status")["status"] == "ok"
    assert by_metric(checks, "job_success_rate")["status"] == "breach"
    assert not [c for c in checks if c["metric"] in ("redis_ping", "container_up")]


@pytest.mark.parametrize(
    ("days", "status", "notify", "message"),
    [(90, "ok", False, "expires in 90 days"),
     (31, "ok", False, "31 days"),
     (30, "warn", True, "certificate example.org expires in 30 days, at or below the limit 30"),
     (8, "warn", True, "8 days"),
     (7, "breach", True, "URGENT: certificate example.org expires in 7 days, at or below the "
                         "limit 7 days"),
     (-2, "breach", True, "-2 days"),
     (None, "breach", True, "could not be measured")],
)
def test_certificates(days, status, notify, message):
    certs = [{"name": "example.org", "days_left": days}]
    check = by_metric(bm_checks.evaluate_daily(healthy_facts(), None, certs),
                      "certificate_days_left", "example.org")
    assert (check["status"], check["notify"]) == (status, notify)
    assert message in check["message"]


def test_certificate_warning_asks_for_mail_without_breach():
    checks = bm_checks.evaluate_daily(healthy_facts(), {}, [{"path": "/c.pem", "days_left": 20}])
    summary = bm_checks.report_summary(checks)
    assert (summary["status"], summary["notify"], summary["breach"]) == ("warn", True, 0)


@pytest.mark.parametrize(
    ("statuses", "overall"),
    [([], "ok"), (["ok", "ok"], "ok"), (["ok", "warn"], "warn"), (["warn", "breach"], "breach")],
)
def test_report_summary(statuses, overall):
    checks = [bm_checks.make_check("m", "storage", 1, 1, "==", status=s,
                                   message=bm_checks.msg("detail.failed", names=f"m {i}"))
              for i, s in enumerate(statuses)]
    summary = bm_checks.report_summary(checks)
    assert summary["status"] == overall
    assert summary["total"] == len(statuses)
    assert summary["breaches"] == [f"failed: m {i}" for i, s in enumerate(statuses)
                                   if s == "breach"]
    assert summary["notify"] == ("breach" in statuses)


@pytest.mark.parametrize(
    ("value", "limit", "op", "ok"),
    [(5, 5, ">=", True), (4, 5, ">=", False), (5, 5, ">", False), (5, 5, "<", False),
     (4, 5, "<", True), (5, 5, "<=", True), (6, 5, "<=", False), (200, 200, "==", True),
     (503, 200, "==", False)],
)
def test_make_check_ops(value, limit, op, ok):
    check = bm_checks.make_check("m", "storage", value, limit, op)
    assert (check["status"] == "ok") is ok


def test_make_check_rejects_unknown_op():
    with pytest.raises(ValueError, match="unknown op"):
        bm_checks.make_check("m", "storage", 1, 1, "~")


def test_prometheus_textfile():
    checks = bm_checks.evaluate_daily(healthy_facts(storage={
        "targets": [{"name": 'na"s\\1', "used_percent": 85.5}], "filesystems": [], "error": None}))
    text = bm_checks.prometheus(checks, "bmops", "daily", 1764331200)
    lines = text.splitlines()
    assert text.endswith("\n")
    assert "# TYPE bmops_check_status gauge" in lines
    assert "# HELP bmops_check_value Measured value of one bmops check." in lines
    assert ('bmops_check_status{check="daily",metric="storage_used_percent",item="na\\"s\\\\1"} 2'
            in lines)
    assert ('bmops_check_value{check="daily",metric="storage_used_percent",item="na\\"s\\\\1"} '
            "85.5" in lines)
    assert 'bmops_run_status{check="daily"} 2' in lines
    assert 'bmops_run_breaches{check="daily"} 1' in lines
    assert 'bmops_run_timestamp_seconds{check="daily"} 1764331200.0' in lines
    # every sample line belongs to a family announced by HELP and TYPE
    families = {line.split()[2] for line in lines if line.startswith("# TYPE")}
    for line in lines:
        if not line.startswith("#"):
            assert line.split("{")[0] in families


def test_prometheus_skips_unmeasured_values_and_sanitises_prefix():
    checks = [bm_checks.make_check("m", "storage", None, 5, "<=")]
    text = bm_checks.prometheus(checks, "bm-ops", "weekly")
    assert "bm_ops_check_limit" in text
    assert "bm_ops_check_value{" not in text
    assert "timestamp" not in text


APT_OUTPUT = """\
NOTE: This is only a simulation!
Reading package lists...
Inst libssl3 [3.0.11-1~deb12u1] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst tzdata [2024a-0+deb12u1] (2024b-0+deb12u1 Debian:12.8/stable [all])
Inst openssl [3.0.11-1~deb12u1] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64]) []
Inst newpkg (1.0-1 Debian:12.8/stable [amd64])
Conf libssl3 (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
"""


def test_apt_upgrades():
    result = bm_checks.apt_upgrades(APT_OUTPUT)
    assert (result["total"], result["security"]) == (4, 2)
    assert result["security_packages"] == ["libssl3", "openssl"]
    assert result["packages"][0] == {
        "name": "libssl3", "current": "3.0.11-1~deb12u1", "candidate": "3.0.15-1~deb12u1",
        "origin": "Debian-Security:12/stable-security", "security": True}
    assert result["packages"][3]["current"] is None
    assert bm_checks.apt_upgrades("") == {"total": 0, "security": 0, "packages": [],
                                          "security_packages": []}


def pg_stats(**override):
    stats = {
        "databases": [{"name": "backup_mgmt", "xid_age": 1000}],
        "tables": [{"schema": "public", "table": "backup_jobs", "live_tuples": 9000,
                    "dead_tuples": 1000, "dead_percent": 10.0}],
        "unused_indexes": [], "missing_index_candidates": [],
        "connections": {"used_percent": 10.0}, "long_running_queries": [],
        "cache_hit": {"blks_hit": 99900, "blks_read": 100, "ratio_percent": 99.9},
        "pg_stat_statements": {"available": True, "statements": []}, "errors": [],
    }
    stats.update(override)
    return stats


def test_weekly_healthy_is_ok():
    checks = bm_checks.evaluate_weekly(pg_stats(), None, {"security": 0, "total": 3}, [])
    assert {c["status"] for c in checks} == {"ok"}


@pytest.mark.parametrize(
    ("override", "metric", "status", "message"),
    [
        ({"tables": [{"schema": "public", "table": "t", "live_tuples": 700,
                      "dead_tuples": 300, "dead_percent": 30.0}]},
         "dead_tuple_percent", "warn", "dead tuples of public.t 30.0 % is above the limit 20 %"),
        ({"cache_hit": {"blks_hit": 90000, "blks_read": 10000, "ratio_percent": 90.0}},
         "cache_hit_percent", "warn", "cache hit ratio 90.0 % is below the limit 99 %"),
        ({"databases": [{"name": "db", "xid_age": 600000000}]}, "xid_age", "warn",
         "transaction ID age of db 600000000 is at or above the limit 500000000"),
        ({"databases": [{"name": "db", "xid_age": 1600000000}]}, "xid_age", "breach",
         "1500000000"),
        ({"pg_stat_statements": {"available": False, "reason": "not installed"}},
         "pg_stat_statements_available", "warn", "not installed"),
        ({"unused_indexes": [{"index": "ix_a"}]}, "unused_indexes", "warn", "(ix_a)"),
        ({"missing_index_candidates": [{"schema": "public", "table": "big"}]},
         "missing_index_candidates", "warn", "public.big"),
        ({"long_running_queries": [{"seconds": 900.25}]}, "longest_query_seconds", "warn",
         "longest running query 900.2 s is above the limit 300 s"),
        ({"connections": {"used_percent": 95.0}}, "connections_used_percent", "warn", "95.0 %"),
    ],
)
def test_weekly_table(override, metric, status, message):
    check = by_metric(bm_checks.evaluate_weekly(pg_stats(**override)), metric)
    assert check["status"] == status
    assert message in check["message"]


def test_weekly_small_tables_and_cold_cache_are_ignored():
    checks = bm_checks.evaluate_weekly(pg_stats(
        tables=[{"schema": "s", "table": "t", "live_tuples": 1, "dead_tuples": 9,
                 "dead_percent": 90.0}],
        cache_hit={"blks_hit": 1, "blks_read": 9, "ratio_percent": 10.0}))
    assert not [c for c in checks if c["metric"] in ("dead_tuple_percent", "cache_hit_percent")]


def test_weekly_database_down_and_updates():
    checks = bm_checks.evaluate_weekly(
        {"failed": True, "msg": "Cannot connect to PostgreSQL at h:5432 as u: refused"},
        None, {"security": 2, "total": 5, "security_packages": ["libssl3", "openssl"]},
        [{"name": "example.org", "days_left": 3}])
    down = by_metric(checks, "pg_stats")
    assert down["status"] == "breach"
    assert down["message"].startswith("database statistics could not be read: Cannot connect")
    assert not [c for c in checks if c["metric"] == "longest_query_seconds"]
    updates = by_metric(checks, "security_updates")
    assert updates["status"] == "warn" and "(libssl3, openssl)" in updates["message"]
    assert by_metric(checks, "certificate_days_left")["status"] == "breach"


def test_stats_summary_merges_hosts():
    merged = bm_checks.stats_summary([
        {"host": "a", "status": "ok", "breaches": [], "report": "/r/daily-latest.json"},
        {"host": "b", "status": "breach", "breaches": ["x 1 is above the limit 0"],
         "report": "/r/daily-latest.json"},
    ])
    assert merged["status"] == "breach"
    assert merged["breaches"] == ["b: x 1 is above the limit 0"]
    assert merged["report"] is None and set(merged["hosts"]) == {"a", "b"}
    single = bm_checks.stats_summary([{"host": "a", "status": "warn", "breaches": [],
                                       "warnings": ["failed jobs 1 is above the limit 0"],
                                       "report": "/r/x.json"}])
    assert (single["status"], single["report"]) == ("warn", "/r/x.json")
    assert single["warnings"] == ["a: failed jobs 1 is above the limit 0"]


def test_filter_module_exposes_the_filters():
    names = set(bm_checks.FilterModule().filters())
    assert {"bm_evaluate_daily", "bm_evaluate_weekly", "bm_report_summary", "bm_prometheus",
            "bm_apt_upgrades"} <= names


def test_daily_limits_are_the_defaults_with_the_overrides():
    from bm_checks import DAILY_DEFAULTS, daily_limits

    assert daily_limits() == DAILY_DEFAULTS
    assert daily_limits({})["success_rate_min"] == 95
    merged = daily_limits({"storage_used_max": 70, "cert_warn_days": None})
    assert merged["storage_used_max"] == 70
    assert merged["cert_warn_days"] == 30
    assert DAILY_DEFAULTS["storage_used_max"] == 80  # the defaults are not changed


# ------------------------------------------------------------------ backups (issue 21 item 5)
def _status(age_hours=None, run_ok=None, error=None):
    if error:
        return {"error": error}
    return {"newest_verified": None if age_hours is None else {
                "id": "20261201_020000", "created_utc": "2026-12-01T02:00:00Z",
                "age_seconds": int(age_hours * 3600)},
            "last_scheduled_run": None if run_ok is None else {
                "ok": run_ok, "finished_utc": "2026-12-01T02:01:00Z",
                "error": None if run_ok else "backup failed during dump (...): disk full"}}


BACKUP_CASES = [
    # (name, status, expected statuses of (age, last scheduled run))
    ("fresh backup, run ok", _status(2, True), ("ok", "ok")),
    ("at the limit", _status(26, True), ("ok", "ok")),
    ("just over the limit", _status(26.01, True), ("breach", "ok")),
    ("scheduled run failed", _status(3, False), ("ok", "breach")),
    ("new host: no backup, no run yet", _status(), ("warn", "warn")),
    ("run happened, no verified backup", _status(None, False), ("breach", "breach")),
    ("manual backup only, no scheduled run", _status(1), ("ok", "warn")),
    ("tool not installed", _status(error="/usr/local/sbin/bmops-backup is not installed"),
     ("warn", "warn")),
]


@pytest.mark.parametrize("name,status,expected", BACKUP_CASES,
                         ids=[c[0] for c in BACKUP_CASES])
def test_backup_checks(name, status, expected):
    checks = {c["metric"]: c for c in bm_checks.evaluate_daily(healthy_facts(), backup=status)}
    got = (checks["backup_newest_age_hours"]["status"],
           checks["backup_last_scheduled_run"]["status"])
    assert got == expected
    if got[1] == "breach" and status.get("last_scheduled_run"):
        assert "disk full" in checks["backup_last_scheduled_run"]["message"]


def test_backup_age_limit_is_a_threshold():
    checks = bm_checks.evaluate_daily(healthy_facts(), {"backup_age_max_hours": 50},
                                      backup=_status(40, True))
    age = next(c for c in checks if c["metric"] == "backup_newest_age_hours")
    assert age["status"] == "ok" and age["limit"] == 50
    assert "20261201_020000" in age["message"]


def test_no_backup_status_adds_no_check():
    metrics = {c["metric"] for c in bm_checks.evaluate_daily(healthy_facts())}
    assert not {"backup_newest_age_hours", "backup_last_scheduled_run"} & metrics


# ------------------------------------------------------------------ exact edges (issue 14 item 1)
@pytest.mark.parametrize(("rate", "status", "shown"), [
    (94.995, "breach", "94.995 %"), (95.0, "ok", "95.0 %"), (95.001, "ok", "95.001 %"),
    (100.0 * 18999 / 20000, "breach", "94.995 %")])
def test_success_rate_compared_unrounded(rate, status, shown):
    jobs = {"total": 20000, "succeeded": 0, "failed": 0, "success_rate": rate,
            "window_hours": 24, "failed_jobs": [], "error": None}
    check = by_metric(bm_checks.evaluate_daily(healthy_facts(jobs=jobs)), "job_success_rate")
    assert check["status"] == status and shown in check["message"], check["message"]


@pytest.mark.parametrize(("used", "status"), [(79.99, "ok"), (79.9999, "ok"), (80.0, "breach"),
                                              (80.00001, "breach")])
def test_storage_compared_unrounded(used, status):
    facts = healthy_facts()
    facts["storage"]["targets"][0]["used_percent"] = used
    check = by_metric(bm_checks.evaluate_daily(facts), "storage_used_percent", "nas1")
    assert check["status"] == status
    assert "80 %" not in check["message"].split(" is ")[0], check["message"]  # value shown exact


@pytest.mark.parametrize(("days", "status", "shown"), [
    (30.5, "ok", "30.5 days"), (30, "warn", "30 days"), (7.5, "warn", "7.5 days"),
    (7, "breach", "7 days"), (7.01, "warn", "7.01 days"), (30.001, "ok", "30.001 days")])
def test_certificate_days_compared_unrounded(days, status, shown):
    certs = [{"name": "example.org", "days_left": int(days), "seconds_left": days * 86400}]
    check = by_metric(bm_checks.evaluate_daily(healthy_facts(), None, certs),
                      "certificate_days_left", "example.org")
    assert check["status"] == status and shown in check["message"], check["message"]


# ------------------------------------------------------------------ once per crossing (item 3)
def _cert(days, not_after="2027-01-01T00:00:00+00:00"):
    return bm_checks.certificate_checks(
        [{"name": "example.org", "days_left": days, "not_after": not_after}])


def test_certificate_alert_mailed_once_per_crossing():
    first = bm_checks.notify_once(_cert(29), [])
    assert first["checks"][0]["notify"] is True and len(first["keys"]) == 1
    again = bm_checks.notify_once(_cert(28), first["keys"])  # the next day: no mail
    assert again["checks"][0]["notify"] is False and again["keys"] == first["keys"]
    assert "mailed when it crossed" in again["checks"][0]["message"]
    urgent = bm_checks.notify_once(_cert(7), again["keys"])  # crossing 7: mailed
    assert urgent["checks"][0]["notify"] is True and urgent["checks"][0]["status"] == "breach"
    later = bm_checks.notify_once(_cert(6), urgent["keys"])
    assert later["checks"][0]["notify"] is False
    assert later["checks"][0]["status"] == "breach"  # still a breach, only not mailed again
    renewed = bm_checks.notify_once(_cert(89, "2027-03-01T00:00:00+00:00"), later["keys"])
    assert renewed["keys"] == [] and renewed["checks"][0]["status"] == "ok"
    # the renewed certificate crossing 30 days later is a new crossing
    assert bm_checks.notify_once(_cert(30, "2027-03-01T00:00:00+00:00"),
                                 renewed["keys"])["checks"][0]["notify"] is True


def test_notify_once_leaves_other_checks_alone():
    checks = [bm_checks.make_check("storage_used_percent", "storage", 90.0, 80, "<", "%")]
    out = bm_checks.notify_once(checks, ["storage_used_percent||breach|"])
    assert out["checks"][0]["notify"] is True and out["keys"] == []
