# SPDX-License-Identifier: Apache-2.0
"""bm_health_info and plugins/module_utils/bm_health.py: parsing tables, result shaping,
a real local HTTP server for the probes, and main() with patched exit/fail."""

from __future__ import annotations

import datetime
import decimal
import http.server
import json
import os
import threading

# tests/conftest.py puts plugins/modules on sys.path and plugins/module_utils
# under ansible.module_utils, as Ansible does on the managed host.
import bm_health_info
import pytest
from ansible.module_utils import basic, bm_health
from ansible.module_utils.bm_common import connect_error_message, jsonable
from ansible.module_utils.testing import patch_module_args
from helpers.module_harness import ExitJson, FailJson


# ------------------------------------------------------------------ log parsing
@pytest.mark.parametrize(
    ("line", "level"),
    [
        ('{"level": "ERROR", "msg": "job 4 failed"}', "error"),
        ('{"levelname": "warning", "message": "slow"}', "warning"),
        ('{"severity": "CRITICAL"}', "error"),
        ('{"level": "info", "msg": "an ERROR word in the text"}', None),
        ('{"msg": "no level"}', None),
        ("2026-11-28 03:00:01 ERROR backup failed", "error"),
        ("[2026-11-28 03:00:01,123: WARNING/MainProcess] retry", "warning"),
        ("level=error msg=boom", "error"),
        ("time=x level=warn msg=hm", "warning"),
        ("FATAL: password authentication failed", "error"),
        ("INFO no error occurred", None),
        ("INFO all good", None),
        ("{not json ERROR", "error"),
        ("", None),
    ],
)
def test_line_level(line, level):
    assert bm_health.line_level(line) == level


def test_count_log_levels_keeps_the_last_samples():
    lines = [f"ERROR e{i}" for i in range(7)] + ["WARNING w", "INFO x", "", "  "]
    counted = bm_health.count_log_levels(lines, sample_lines=3, sample_chars=5)
    assert (counted["error"], counted["warning"], counted["lines"]) == (7, 1, 9)
    assert counted["samples"]["error"] == ["ERROR", "ERROR", "ERROR"]  # cut to 5 chars
    full = bm_health.count_log_levels(lines, sample_lines=2)
    assert full["samples"]["error"] == ["ERROR e5", "ERROR e6"]
    assert full["samples"]["warning"] == ["WARNING w"]


# ------------------------------------------------------------------ shaping
def test_shape_jobs():
    rows = [{"id": 3, "name": "nightly", "error": "disk full",
             "finished_at": datetime.datetime(2026, 11, 28, 3, 0, tzinfo=datetime.UTC)}]
    jobs = bm_health.shape_jobs({"total": 20, "succeeded": 19, "failed": 1}, rows, 24)
    assert jobs["success_rate"] == 95.0
    assert jobs["failed_jobs"] == [{"id": 3, "name": "nightly", "error": "disk full",
                                    "finished_at": "2026-11-28T03:00:00+00:00"}]
    empty = bm_health.shape_jobs({"total": 0, "succeeded": 0, "failed": 0}, [], 24)
    assert empty["success_rate"] is None and empty["total"] == 0
    assert bm_health.shape_jobs(None, None, 6)["total"] == 0


@pytest.mark.parametrize(
    ("row", "percent"),
    [({"capacity_bytes": 1000, "used_bytes": 800}, 80.0),
     ({"capacity_bytes": decimal.Decimal(3), "used_bytes": decimal.Decimal(1)},
      pytest.approx(100 / 3)),
     ({"capacity_bytes": 0, "used_bytes": 5}, None),
     ({"capacity_bytes": None, "used_bytes": 5}, None)],
)
def test_shape_storage_target(row, percent):
    assert bm_health.shape_storage_target(dict(row, name="t"))["used_percent"] == percent


def test_filesystem_usage_matches_df_and_reports_errors():
    class St:
        f_frsize = 4096
        f_blocks = 1000
        f_bfree = 300
        f_bavail = 200

    usage = bm_health.filesystem_usage("/x", statvfs=lambda path: St)
    assert usage["used_bytes"] == 700 * 4096 and usage["free_bytes"] == 200 * 4096
    # 700 / (700 + 200), as df shows; unrounded
    assert usage["used_percent"] == pytest.approx(70000 / 900)
    missing = bm_health.filesystem_usage("/does/not/exist/bmops")
    assert missing["used_percent"] is None and "No such file" in missing["error"]
    assert bm_health.filesystem_usage(os.getcwd())["error"] is None


INSPECT = {
    "Id": "0123456789abcdef", "Name": "/backup-mgmt-backend-1", "RestartCount": 2,
    "State": {"Status": "running", "Running": True, "ExitCode": 0,
              "StartedAt": "2026-11-28T00:00:00Z", "Health": {"Status": "healthy"}},
    "Config": {"Image": "bmops/backend:ref",
               "Labels": {"com.docker.compose.project": "backup-mgmt",
                          "com.docker.compose.service": "backend"}},
}


def test_container_from_inspect():
    assert bm_health.container_from_inspect(INSPECT) == {
        "id": "0123456789ab", "name": "backup-mgmt-backend-1", "service": "backend",
        "state": "running", "running": True, "health": "healthy", "exit_code": 0,
        "restart_count": 2, "started_at": "2026-11-28T00:00:00Z", "image": "bmops/backend:ref"}
    bare = bm_health.container_from_inspect({"State": {"Status": "exited"}})
    assert bare["health"] is None and bare["running"] is False and bare["service"] is None


@pytest.mark.parametrize(
    ("rc", "out", "err", "ok", "error"),
    [(0, "PONG\n", "", True, None),
     (0, "NOAUTH Authentication required.\n", "", False, "NOAUTH Authentication required."),
     (0, "AUTH failed: WRONGPASS invalid username-password pair\n", "", False, "WRONGPASS"),
     (1, "", "Could not connect to Redis", False, "Could not connect to Redis"),
     (126, "", "", False, "rc=126")],
)
def test_redis_from_reply(rc, out, err, ok, error):
    reply = bm_health.redis_from_reply(rc, out, err, "docker-exec")
    assert reply["ok"] is ok
    if error is None:
        assert reply["error"] is None
    else:
        assert error in reply["error"]


# ------------------------------------------------------------------ docker backends
class FakeRunModule:
    """What DockerCli needs of AnsibleModule: get_bin_path and run_command."""

    def __init__(self, replies):
        self.replies = replies
        self.calls = []

    def get_bin_path(self, name, required=False):
        return "/usr/bin/" + name

    def run_command(self, args, environ_update=None):
        self.calls.append((args, environ_update))
        return self.replies.pop(0)


def test_docker_cli_lists_project_containers_and_passes_secrets_by_environment():
    module = FakeRunModule([(0, "abc\n", ""), (0, json.dumps([INSPECT]), ""),
                            (0, "PONG\n", "")])
    cli = bm_health.DockerCli(module)
    containers = cli.project_containers("backup-mgmt")
    assert containers[0]["service"] == "backend"
    assert module.calls[0][0] == ["/usr/bin/docker", "ps", "--all", "--quiet", "--no-trunc",
                                  "--filter", "label=com.docker.compose.project=backup-mgmt"]
    assert module.calls[1][0] == ["/usr/bin/docker", "inspect", "abc"]
    containers[0]["service"] = "redis"
    reply = bm_health.redis_ping_docker(cli, containers, "redis", "s3cret")
    args, env = module.calls[2]
    assert reply["ok"] is True
    assert args == ["/usr/bin/docker", "exec", "-e", "REDISCLI_AUTH", "0123456789ab",
                    "redis-cli", "ping"]
    assert "s3cret" not in " ".join(args)
    assert env == {"REDISCLI_AUTH": "s3cret"}


def test_docker_cli_errors_are_sentences():
    cli = bm_health.DockerCli(FakeRunModule([(1, "", "Cannot connect to the Docker daemon\n")]))
    with pytest.raises(RuntimeError, match=r"docker ps failed \(rc=1\): Cannot connect"):
        cli.project_containers("p")
    empty = bm_health.DockerCli(FakeRunModule([(0, "\n", "")]))
    assert empty.project_containers("p") == []


class FakeDocker:
    method = "fake"

    def __init__(self, logs, fail=()):
        self._logs = logs
        self.fail = fail

    def logs(self, container_id, since):
        assert since == "24h"
        if container_id in self.fail:
            raise RuntimeError("log driver none")
        return self._logs[container_id]


def test_gather_logs_counts_per_service_over_containers():
    containers = [{"id": "a", "name": "p-backend-1", "service": "backend"},
                  {"id": "b", "name": "p-backend-2", "service": "backend"},
                  {"id": "c", "name": "p-celery-1", "service": "celery"}]
    backend = FakeDocker({"a": ["ERROR one", "INFO x"], "b": ["ERROR two", "WARNING w"],
                          "c": []}, fail=("c",))
    logs = bm_health.gather_logs(backend, containers, ["backend", "celery", "beat"], 24, 5)
    assert logs["services"]["backend"]["error"] == 2
    assert logs["services"]["backend"]["samples"]["error"] == ["ERROR one", "ERROR two"]
    assert logs["services"]["backend"]["containers"] == ["p-backend-1", "p-backend-2"]
    assert logs["services"]["celery"]["read_error"] == "log driver none"
    assert "no container for service beat" in logs["services"]["beat"]["read_error"]
    assert "celery: log driver none" in logs["error"]


def test_since_datetime():
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - bm_health.since_datetime("24h")).total_seconds() - 86400) < 5
    assert abs((now - bm_health.since_datetime("90m")).total_seconds() - 5400) < 5


# ------------------------------------------------------------------ HTTP (real server)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health/ready":
            body, status = b'{"status": "fail", "failed": ["db"]}', 503
        elif self.path == "/health/live":
            body, status = b'{"status": "ok"}', 200
        else:
            body, status = b"not json", 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_base():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_probe_statuses(http_base):
    health = bm_health.gather_health(http_base + "/", timeout=2)
    assert health["ready"]["status"] == 503 and health["ready"]["ok"] is False
    assert health["ready"]["json"] == {"status": "fail", "failed": ["db"]}
    assert health["live"]["status"] == 200 and health["live"]["ok"] is True
    assert health["live"]["latency_ms"] >= 0 and health["error"] is None
    other = bm_health.http_probe(http_base + "/other", timeout=2)
    assert other["status"] == 404 and other["json"] is None and other["body"] == "not json"


def test_http_probe_never_raises():
    refused = bm_health.gather_health("http://127.0.0.1:9", timeout=1)
    assert refused["ready"]["status"] is None and refused["ready"]["error"]
    assert refused["error"].startswith("backend unreachable at http://127.0.0.1:9")
    assert "not an http(s) URL" in bm_health.http_probe("file:///etc/passwd")["error"]


# ------------------------------------------------------------------ module main()
class FakeCursor:
    def __init__(self, results):
        self.results = results
        self.executed = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=None):
        self.executed.append((sql, params))

    def fetchone(self):
        return self.results.pop(0)

    def fetchall(self):
        return self.results.pop(0)


class FakeConn:
    def __init__(self, results):
        self.cur = FakeCursor(results)
        self.closed = False

    def cursor(self):
        return self.cur

    def close(self):
        self.closed = True


def run_gatherer(args, **kwargs):
    with patch_module_args(args):
        module = basic.AnsibleModule(argument_spec=bm_health_info.argument_spec(),
                                     supports_check_mode=True)
    return bm_health_info.HealthGatherer(module, **kwargs).run()


def test_gatherer_jobs_use_overridden_sql_and_params():
    conn = FakeConn([{"total": 4, "succeeded": 3, "failed": 1},
                     [{"id": 1, "name": "j", "error": "x", "finished_at": None}]])
    result = run_gatherer({"sections": ["jobs"], "window_hours": 6, "failed_jobs_limit": 3,
                           "jobs_summary_query": "SELECT 1", "db_password": "pw"},
                          connect=lambda params, app: conn)
    assert result["jobs"]["success_rate"] == 75.0 and result["errors"] == []
    assert conn.cur.executed[0] == ("SELECT 1", {"window_hours": 6, "limit": 3})
    assert conn.cur.executed[1][0] == bm_health.FAILED_JOBS_SQL
    assert conn.closed
    assert result["health"] is None and result["containers"] is None


def test_gatherer_database_down_is_a_section_error_not_a_crash(tmp_path):
    def refuse(params, app):
        raise OSError('connection failed: connection to server at "127.0.0.1", port 5432 '
                      "failed: Connection refused\n\tIs the server running on that host?")

    result = run_gatherer({"sections": ["jobs", "storage"], "paths": [str(tmp_path)],
                           "db_password": "pw"}, connect=refuse)
    assert result["jobs"] == {"error": (
        "Cannot connect to PostgreSQL at 127.0.0.1:5432 as postgres: Connection refused. "
        "Check bm_db_password, that the db container is running and that port 5432 is "
        "published on the host.")}
    assert result["storage"]["filesystems"][0]["used_percent"] is not None
    assert result["storage"]["error"].startswith("storage_targets: Cannot connect")
    assert [e.split(":")[0] for e in result["errors"]] == ["jobs", "storage"]


def test_gatherer_docker_sections_with_a_fake_backend():
    class Backend(FakeDocker):
        def project_containers(self, project):
            assert project == "bm"
            return [dict(bm_health.container_from_inspect(INSPECT), id="a", service=s,
                         name=f"bm-{s}-1") for s in ("redis", "backend")]

        def exec_env(self, container_id, argv, env):
            assert env == {"REDISCLI_AUTH": "rpw"} and argv == ["redis-cli", "ping"]
            return 0, "PONG\n", ""

    backend = Backend({"a": ["ERROR x"]})
    result = run_gatherer({"sections": ["logs", "redis", "containers"], "project_name": "bm",
                           "log_services": ["backend"], "redis_password": "rpw"},
                          docker_backend=backend)
    assert [c["service"] for c in result["containers"]["items"]] == ["backend", "redis"]
    assert result["logs"]["services"]["backend"]["error"] == 1
    assert result["redis"] == {"method": "docker-exec", "ok": True, "response": "PONG",
                               "error": None}
    assert result["errors"] == []


def test_main_exits_unchanged_and_hides_passwords(module_exit, http_base):
    args = {"sections": ["health"], "health_url": http_base, "db_password": "dbpw",
            "redis_password": "rpw", "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(ExitJson) as exc:
        bm_health_info.main()
    result = exc.value.args[0]
    assert result["changed"] is False
    assert result["health"]["ready"]["status"] == 503
    assert "dbpw" not in json.dumps(result) and "rpw" not in json.dumps(result)
    spec = bm_health_info.argument_spec()
    assert spec["db_password"]["no_log"] and spec["redis_password"]["no_log"]


def test_main_without_psycopg_names_the_library(module_exit, monkeypatch):
    from ansible.module_utils import bm_common

    monkeypatch.setattr(bm_common, "HAS_PSYCOPG", False)
    with patch_module_args({"sections": ["jobs"]}), pytest.raises(FailJson) as exc:
        bm_health_info.main()
    assert "psycopg" in exc.value.args[0]["msg"]


def test_connect_error_message_never_shows_the_password():
    msg = connect_error_message({"db_host": "h", "db_port": 1, "db_user": "u",
                                 "db_password": "hunter2"},
                                Exception('FATAL: password "hunter2" authentication failed'))
    assert "hunter2" not in msg and msg.startswith("Cannot connect to PostgreSQL at h:1 as u:")


def test_jsonable():
    value = {"d": decimal.Decimal("1.5"), "i": decimal.Decimal(2), "b": b"x",
             "t": datetime.timedelta(seconds=3), "n": datetime.datetime(2026, 1, 1),
             "l": (datetime.date(2026, 1, 2),)}
    assert jsonable(value) == {"d": 1.5, "i": 2, "b": "x", "t": 3.0,
                               "n": "2026-01-01T00:00:00+00:00", "l": ["2026-01-02"]}


# ------------------------------------------------------- the backend's own log format
@pytest.mark.parametrize(("line", "level"), [
    ("2026-12-02 10:00:00 E disk gone", "error"),
    ("2026-12-02 10:00:00 W slow", "warning"),
    ("2026-12-02 10:00:00 I job ERROR-free", None),  # only the patterns decide
    ('{"level": "error"}', None),
])
def test_line_level_with_patterns(line, level):
    patterns = bm_health.level_patterns(r"^\S+ \S+ E\b", r"^\S+ \S+ W\b")
    assert bm_health.line_level(line, patterns) == level


def test_level_patterns_empty_is_the_automatic_detection():
    assert bm_health.level_patterns("", "") is None
    assert bm_health.level_patterns(None, None) is None
    only_errors = bm_health.level_patterns("^E ", "")
    assert bm_health.line_level("E x", only_errors) == "error"
    assert bm_health.line_level("WARNING x", only_errors) is None


def test_gather_logs_with_patterns():
    containers = [{"id": "a", "name": "p-w-1", "service": "w"}]
    backend = FakeDocker({"a": ["t0 E one", "t1 W two", "ERROR three"]})
    patterns = bm_health.level_patterns(r"^\S+ E\b", r"^\S+ W\b")
    logs = bm_health.gather_logs(backend, containers, ["w"], 24, 5, patterns)
    assert logs["services"]["w"]["error"] == 1
    assert logs["services"]["w"]["warning"] == 1


def test_main_names_a_bad_pattern(module_exit):
    with patch_module_args({"sections": ["logs"], "log_warning_pattern": "(unclosed"}), \
            pytest.raises(FailJson) as exc:
        bm_health_info.main()
    msg = exc.value.args[0]["msg"]
    assert "log_warning_pattern is not a valid Python regular expression" in msg
    assert "bm_backend_log_warning_pattern" in msg
