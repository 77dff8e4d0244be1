# SPDX-License-Identifier: Apache-2.0
"""Tables for filter_plugins/bm_triage.py (incident triage verdicts, parsers, postmortem)."""

from __future__ import annotations

import copy

# tests/conftest.py puts filter_plugins on sys.path.
import bm_triage
import pytest

NOW = "2026-11-28T12:00:00Z"


def container(service, **kw):
    base = {"name": f"backup-mgmt-{service}-1", "service": service, "state": "running",
            "running": True, "health": "healthy", "restart_count": 0, "exit_code": 0,
            "started_at": "2026-11-28T10:00:00.123456789Z", "image": "img"}
    base.update(kw)
    return base


def healthy():
    return {
        "health": {
            "health": {"ready": {"status": 200, "ok": True, "latency_ms": 12.5,
                                 "json": {"status": "ok"}, "error": None},
                       "live": {"status": 200}},
            "redis": {"ok": True, "response": "PONG", "error": None},
            "containers": {"items": [container(s) for s in
                                     ("backend", "celery", "celery-beat", "db", "redis")],
                           "error": None},
            "storage": {"filesystems": [{"path": "/", "used_percent": 40.0}]},
        },
        "pg": {"server": {"started_at": "2026-11-28T09:00:00+00:00"},
               "connections": {"by_state": {"active": 1, "idle": 4}, "total": 5,
                               "max_connections": 100, "used_percent": 5.0},
               "long_running_queries": [],
               "pg_stat_statements": {"available": True, "statements": [
                   {"query": "SELECT 1", "calls": 10, "mean_ms": 0.1}]}},
        "logs": {"backend": [{"time": "2026-11-28T11:59:00Z", "line": "INFO backend ok"}]},
        "nginx": {"present": False},
        "memory": {"total_mb": 2000, "available_mb": 1000, "available_percent": 50.0},
    }


def verdict(result, vid):
    return next(v for v in result["verdicts"] if v["id"] == vid)


def with_(facts, path, value):
    facts = copy.deepcopy(facts)
    node = facts
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return facts


def test_healthy_stack_is_clear():
    result = bm_triage.triage(healthy())
    assert result["status"] == "ok"
    assert {v["status"] for v in result["verdicts"]} == {"clear"}
    assert [v["symptom"] for v in result["verdicts"]] == [
        "API slow", "Container not starting", "DB connection errors", "Host resources"]
    assert all(v["actions"] == [] for v in result["verdicts"])


def test_db_stopped_is_a_db_connection_error_and_only_a_stopped_container():
    facts = healthy()
    items = facts["health"]["containers"]["items"]
    items[3] = container("db", state="exited", running=False, health=None, exit_code=0)
    facts["health"]["health"]["ready"] = {
        "status": 503, "latency_ms": 40, "json": {"status": "fail", "failed": ["db"],
                                                  "checks": {"db": "connection refused"}}}
    facts["pg"] = {"error": "cannot connect to PostgreSQL at 127.0.0.1:5432: refused"}
    facts["logs"]["backend"].append(
        {"time": "2026-11-28T11:59:30Z", "line": "WARNING backend db: connection refused"})
    result = bm_triage.triage(facts)
    db = verdict(result, "db_connection")
    assert db["status"] == "detected"
    assert any("db container backup-mgmt-db-1 is exited" in e for e in db["evidence"])
    assert any("/health/ready reports the database as failed" in e for e in db["evidence"])
    assert any("docker compose start db" in a for a in db["actions"])
    assert verdict(result, "container_not_starting")["status"] == "suspected"
    assert result["detected"] == ["DB connection errors"]
    assert result["status"] == "incident"


@pytest.mark.parametrize(
    ("override", "status", "text"),
    [
        ({"state": "restarting", "running": False, "exit_code": 2, "restart_count": 5},
         "detected", "crash loop"),
        ({"restart_count": 3, "health": "starting"}, "detected", "restarted 3 times"),
        ({"restart_count": 3}, "suspected", "running and healthy now"),
        ({"state": "exited", "running": False, "exit_code": 2}, "detected", "exited with code 2"),
        ({"health": "unhealthy"}, "detected", "unhealthy"),
        ({"state": "exited", "running": False, "exit_code": 0}, "suspected", "stopped"),
        ({"state": "exited", "running": False, "exit_code": 0, "health": "unhealthy"},
         "suspected", "stopped, not crashing"),
        ({"restart_count": 2}, "clear", None),
    ],
)
def test_container_states(override, status, text):
    facts = healthy()
    facts["health"]["containers"]["items"][0] = container("backend", **override)
    facts["logs"]["backend"] = [{"time": None, "line": "ERROR JOB_FAILURE_RATIO must be a number"}]
    v = verdict(bm_triage.triage(facts), "container_not_starting")
    assert v["status"] == status
    if text:
        assert any(text in e for e in v["evidence"])
        assert any("JOB_FAILURE_RATIO" in e for e in v["evidence"])
        assert "playbooks/restart_services.yml -e restart_service=backend" in v["actions"]


def test_missing_service_is_suspected_and_no_container_facts_unknown():
    facts = healthy()
    del facts["health"]["containers"]["items"][1]
    v = verdict(bm_triage.triage(facts), "container_not_starting")
    assert v["status"] == "suspected"
    assert "service celery has no container" in v["evidence"][0]
    facts["health"]["containers"] = {"items": [], "error": "docker ps failed"}
    v = verdict(bm_triage.triage(facts), "container_not_starting")
    assert v["status"] == "unknown"


@pytest.mark.parametrize(
    ("path", "value", "status", "text"),
    [
        (("health", "health", "ready", "latency_ms"), 2500.0, "detected", "took 2500 ms"),
        (("health", "health", "ready"), {"status": None, "error": "timed out"}, "detected",
         "did not answer"),
        (("pg", "long_running_queries"),
         [{"pid": 42, "state": "active", "wait_event_type": "Lock", "seconds": 95.2,
           "query": "SELECT count(*) FROM storage_targets"}], "detected",
         "query pid 42 active for 95 s, waiting on Lock: SELECT count(*) FROM storage_targets"),
        (("pg", "long_running_queries"),
         [{"pid": 42, "state": "active", "seconds": 3, "query": "SELECT 1"}], "clear", None),
        (("pg", "pg_stat_statements", "statements"),
         [{"query": "SELECT pg_sleep(2)", "calls": 1, "mean_ms": 2000.0}], "suspected",
         "slow statement (mean 2000 ms"),
        (("health", "redis"), {"ok": False, "error": "NOAUTH"}, "detected", "Redis did not"),
        (("pg", "connections", "by_state"), {"active": 80}, "detected", "80 active sessions"),
        (("pg", "errors"), ["tables: canceling statement due to lock timeout"], "detected",
         "a statistics query of the triage itself timed out"),
        (("nginx",), {"present": True, "access": {"requests": 100, "status_5xx": 9,
                                                  "percent_5xx": 9.0}},
         "suspected", "9 of 100 recent requests answered 5xx"),
        (("nginx",), {"present": True, "access": {"requests": 10, "status_5xx": 9,
                                                  "percent_5xx": 90.0}}, "clear", None),
    ],
)
def test_api_slow(path, value, status, text):
    v = verdict(bm_triage.triage(with_(healthy(), path, value)), "api_slow")
    assert v["status"] == status
    if text:
        assert any(text in e for e in v["evidence"]), v["evidence"]


def test_thresholds_override_and_none_keeps_default():
    facts = with_(healthy(), ("pg", "long_running_queries"),
                  [{"pid": 1, "state": "active", "seconds": 5, "query": "x"}])
    assert verdict(bm_triage.triage(facts, {"long_query_seconds": 3}),
                   "api_slow")["status"] == "detected"
    assert verdict(bm_triage.triage(facts, {"long_query_seconds": None}),
                   "api_slow")["status"] == "clear"


@pytest.mark.parametrize(
    ("path", "value", "status"),
    [
        (("pg", "connections"), {"by_state": {"idle": 95}, "total": 95, "max_connections": 100,
                                 "used_percent": 95.0}, "detected"),
        (("logs", "celery"), [{"time": None, "line": "ERROR could not connect to server"}],
         "suspected"),
    ],
)
def test_db_connection_other_signs(path, value, status):
    assert verdict(bm_triage.triage(with_(healthy(), path, value)),
                   "db_connection")["status"] == status


@pytest.mark.parametrize(
    ("path", "value", "status"),
    [
        (("health", "storage", "filesystems"), [{"path": "/", "used_percent": 95.0}], "detected"),
        (("memory",), {"total_mb": 1000, "available_mb": 50, "available_percent": 5.0},
         "detected"),
        (("memory",), {"available_percent": None}, "clear"),
    ],
)
def test_host_resources(path, value, status):
    assert verdict(bm_triage.triage(with_(healthy(), path, value)),
                   "host_resources")["status"] == status


def test_nothing_gathered_is_unknown():
    result = bm_triage.triage({})
    assert {v["id"]: v["status"] for v in result["verdicts"]} == {
        "api_slow": "unknown", "container_not_starting": "unknown",
        "db_connection": "unknown", "host_resources": "unknown"}
    assert result["status"] == "ok"


def test_meminfo():
    text = "MemTotal:        2048000 kB\nMemFree: 1 kB\nMemAvailable:     512000 kB\n"
    assert bm_triage.meminfo(text) == {"total_mb": 2000, "available_mb": 500,
                                       "available_percent": 25.0}
    assert bm_triage.meminfo("")["available_percent"] is None


def test_access_log_stats():
    lines = [
        '10.0.0.1 - - [28/Nov/2026:11:00:00 +0000] "GET /api HTTP/1.1" 200 12 "-" "curl"',
        '10.0.0.1 - - [28/Nov/2026:11:00:01 +0000] "GET /api HTTP/1.1" 502 0 "-" "curl"',
        '10.0.0.1 - - [28/Nov/2026:11:00:02 +0000] "GET /x HTTP/1.1" 404 0 "-" "curl"',
        "garbage",
    ]
    stats = bm_triage.access_log_stats(lines)
    assert stats["requests"] == 3 and stats["status_5xx"] == 1 and stats["status_4xx"] == 1
    assert stats["percent_5xx"] == 33.33
    assert stats["first"] == "28/Nov/2026:11:00:00 +0000"
    assert stats["by_status"] == {"200": 1, "404": 1, "502": 1}
    assert bm_triage.access_log_stats([])["percent_5xx"] is None


def test_log_tail():
    text = ("2026-11-28T11:00:00.123456789Z 2026-11-28T11:00:00Z INFO backend up\n"
            "no timestamp here\n\n")
    # the time once: Docker's, the application's own leading timestamp dropped
    assert bm_triage.log_tail(text) == [
        {"time": "2026-11-28T11:00:00Z", "line": "INFO backend up"},
        {"time": None, "line": "no timestamp here"}]


@pytest.mark.parametrize("app_line", [
    "2026-11-28 11:00:00,123 ERROR boom", "[2026-11-28T11:00:00.5+09:00] ERROR boom",
    "2026-11-28T11:00:00Z ERROR boom", "ERROR boom"])
def test_log_tail_shows_the_time_once(app_line):
    [entry] = bm_triage.log_tail(f"2026-11-28T11:00:00.1Z {app_line}\n")
    assert entry == {"time": "2026-11-28T11:00:00Z", "line": "ERROR boom"}


@pytest.mark.parametrize("error", ["Connection refused", "[Errno 104] Connection reset by peer"])
def test_backend_refusing_connections_is_down_not_slow(error):
    facts = with_(healthy(), ("health", "health", "ready"), {"status": None, "error": error})
    result = bm_triage.triage(facts)
    slow = verdict(result, "api_slow")
    assert slow["status"] == "clear" and "down, not slow" in " ".join(slow["evidence"])
    down = verdict(result, "container_not_starting")
    assert down["status"] == "detected" and down["services"] == ["backend"]
    assert down["summary"].endswith(": backend")
    assert result["detected"] == ["Container not starting"]
    assert result["failing_services"] == ["backend"]


def test_failing_services_name_every_one():
    facts = with_(healthy(), ("health", "containers", "items"), [
        container("backend"),
        container("celery", state="restarting", running=False, restart_count=9),
        container("celery-beat"),
        container("db", state="exited", running=False, exit_code=1),
        container("redis")])
    result = bm_triage.triage(facts)
    assert result["failing_services"] == ["celery", "db"]


def test_postmortem_timeline_is_sorted_and_names_the_verdict():
    facts = healthy()
    facts["health"]["containers"]["items"][0] = container(
        "backend", state="restarting", running=False, exit_code=2, restart_count=4,
        started_at="2026-11-28T11:58:00Z")
    facts["logs"]["backend"] = [
        {"time": "2026-11-28T11:57:00Z", "line": "INFO starting"},
        {"time": "2026-11-28T11:57:01Z", "line": "ERROR JOB_FAILURE_RATIO must be a number"},
        {"time": "2026-11-28T11:57:02Z", "line": "ERROR again"}]
    facts["pg"]["long_running_queries"] = [
        {"pid": 7, "state": "active", "seconds": 600, "query": "SELECT 1"}]
    result = bm_triage.triage(facts)
    draft = bm_triage.postmortem(facts, result, NOW)
    times = [e["time"] for e in draft["timeline"]]
    assert times == sorted(times)
    assert draft["timeline"][-1]["event"].startswith("incident triage ran: API slow, "
                                                     "Container not starting detected")
    events = [e["event"] for e in draft["timeline"]]
    assert any(e.startswith("backend: first error") and "JOB_FAILURE_RATIO" in e for e in events)
    assert {"time": "2026-11-28T11:50:00Z", "event": "query pid 7 started (still active): SELECT 1"
            } in [{"time": e["time"], "event": e["event"]} for e in draft["timeline"]]
    assert "PostgreSQL server started" in events
    # Docker's zero time of a never-started container is left out
    facts["health"]["containers"]["items"][0]["started_at"] = "0001-01-01T00:00:00Z"
    draft = bm_triage.postmortem(facts, result, NOW)
    assert not any("backend last started" in e["event"] for e in draft["timeline"])


def test_filter_module_exposes_everything():
    names = set(bm_triage.FilterModule().filters())
    assert names == {"bm_triage", "bm_triage_postmortem", "bm_triage_meminfo",
                     "bm_triage_access_log", "bm_triage_log_tail"}


def test_log_tail_strips_terminal_sequences():
    text = "\x1b[2K2026-11-28T16:48:38.562258525Z INFO backend up\n"
    assert bm_triage.log_tail(text) == [{"time": "2026-11-28T16:48:38Z",
                                         "line": "INFO backend up"}]


@pytest.mark.parametrize(("when", "status"), [("2026-11-28T11:50:00Z", "suspected"),
                                              ("2026-11-28T11:40:00Z", "clear"),
                                              (None, "suspected")])
def test_db_errors_in_logs_count_only_when_recent(when, status):
    facts = with_(healthy(), ("logs", "backend"),
                  [{"time": when, "line": "ERROR backend db: connection refused"}])
    v = verdict(bm_triage.triage(facts, now=NOW), "db_connection")
    assert v["status"] == status


def test_missing_library_is_not_a_db_fault():
    facts = with_(healthy(), ("pg",), {"unavailable": "Failed to import the required Python "
                                                      "library (psycopg)"})
    v = verdict(bm_triage.triage(facts), "db_connection")
    assert v["status"] == "clear"
    assert any("not a database fault" in e for e in v["evidence"])


def test_every_sentence_reads_in_japanese_and_english():
    """Each verdict's sentences are msgs: rendered in en they are the English fields,
    in ja they are Japanese (the manual's terms), with the same figures."""
    import bm_i18n
    facts = healthy()
    facts["health"]["containers"]["items"][1] = container(
        "celery", state="restarting", running=False, restart_count=9)
    facts["health"]["health"]["ready"] = {"status": 200, "latency_ms": 2400.0}
    facts["pg"]["long_running_queries"] = [
        {"pid": 7, "state": "active", "seconds": 600, "query": "SELECT 1",
         "wait_event_type": "Lock"}]
    facts["memory"]["available_percent"] = 5.0
    result = bm_triage.triage(facts, now=NOW)
    for v in result["verdicts"]:
        assert bm_i18n.render(v["msg"]["summary"], "en") == v["summary"]
        assert [bm_i18n.render(e, "en") for e in v["msg"]["evidence"]] == v["evidence"]
        assert [bm_i18n.render(a, "en") for a in v["msg"]["actions"]] == v["actions"]
    ja = {v["id"]: [bm_i18n.render(e, "ja") for e in v["msg"]["evidence"]]
          for v in result["verdicts"]}
    assert "/health/ready の応答に 2400 ms かかりました（基準 1000 ms）" in ja["api_slow"]
    assert "クエリ pid 7 が 10.0 分 active、Lock 待ち: SELECT 1" in ja["api_slow"]
    assert ("celery（backup-mgmt-celery-1）が再起動を繰り返しています（クラッシュループ、"
            "再起動 9 回）") in ja["container_not_starting"]
    assert "メモリ: 2000 MB 中 1000 MB が利用可能（5.0 %、基準 10 %）" in ja["host_resources"]
    draft = bm_triage.postmortem(facts, result, NOW)
    assert bm_i18n.render(draft["timeline"][-1]["msg"], "ja") == (
        "障害の切り分けを実行: API 応答遅延、コンテナが起動しない、ホストのリソース を検知")
