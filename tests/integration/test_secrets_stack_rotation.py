# SPDX-License-Identifier: Apache-2.0
"""Secrets rotate without breaking anything (issue #21, item 2).

Each password is rotated in the inventory (host_vars of the stack host, over
the demo vault) to a value with the characters that break naive quoting, then
site.yml runs at -vvv. Afterwards the app is ready, the db container was not
recreated or restarted, backend and celery logged no ERROR since the rotation
started, the daily check finds no breach of its own making, and neither the old
nor the new value appears in the host's process list (sampled during the run),
in `docker inspect` of any container, in PostgreSQL's logs or
pg_stat_statements, in the reports or in the job events. The module puts the
inventory's passwords back before it ends (later modules use the demo vault).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
from ansible.module_utils.bm_health import count_log_levels

pytestmark = pytest.mark.integration

ODD = "$ ' \" # % @ : / and a space"
NEW_REDIS = f"rot-redis {ODD} \\r1"
NEW_DB = f"rot-db {ODD} \\d1"
LOG_SERVICES = ["backend", "celery"]


class PsSampler:
    """Collect the host's full command lines while a playbook runs."""

    def __init__(self, stack):
        self.stack = stack
        self.lines: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            out = self.stack.sh("ps -eww -o args=", check=False).stdout
            self.lines.update(out.splitlines())
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def container_ids(stack) -> dict[str, str]:
    """service -> container ID and StartedAt of the project's containers."""
    out = stack.sh("docker ps -aq --filter label=com.docker.compose.project=backup-mgmt "
                   "| xargs docker inspect -f "
                   "'{{index .Config.Labels \"com.docker.compose.service\"}} {{.Id}} "
                   "{{.State.StartedAt}}'").stdout
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()}


def log_errors_since(stack, since: str) -> dict[str, list[str]]:
    """ERROR lines (as the daily check counts them) of backend and celery since SINCE."""
    errors = {}
    for service in LOG_SERVICES:
        logs = stack.sh(f"docker compose -f /opt/backup-mgmt/compose.yaml logs --no-log-prefix "
                        f"--since {since} {service} 2>&1").stdout
        errors[service] = count_log_levels(logs.splitlines())["samples"]["error"]
    return errors


def errors_in_window(stack) -> int:
    """Most ERROR lines of one service the daily check would count now (24 h window):
    earlier modules (test_checks_stack stops redis, fails jobs) legitimately leave some."""
    return max(count_log_levels(stack.sh(
        f"docker compose -f /opt/backup-mgmt/compose.yaml logs --no-log-prefix --since 24h "
        f"{service} 2>&1").stdout.splitlines())["error"] for service in LOG_SERVICES)


def assert_daily_check_passes(stack, earlier_errors: int) -> None:
    """The next daily check passes; ERROR lines older than this module are allowed."""
    extravars = {"bm_daily_thresholds": {"error_logs_max": earlier_errors}} \
        if earlier_errors else {}
    daily = stack.run("daily_check", extravars=extravars)
    summary = daily.artifact_data.get("bmops_daily", {})
    assert daily.rc == 0 and summary.get("breaches") == [], summary


def task_changed(result, name: str) -> bool:
    """Whether app_stack's task NAME reported a change (no_log results carry no
    `changed` in their events, so read the task's block of the run's stdout)."""
    block = result.stdout.split(f"TASK [app_stack : {name}]", 1)[-1].split("\nTASK [", 1)[0]
    return "changed: [" in block


ALTER_TASK = "Set the new password on the PostgreSQL role (local socket, SQL on stdin)"


def assert_nowhere(stack, result, sampler, secrets) -> None:
    blobs = {
        "job events": "\n".join(json.dumps(ev) for ev in result.events) + result.stdout,
        "ps on the host": "\n".join(sampler.lines),
        "docker inspect (inner)": stack.sh("docker ps -aq | xargs docker inspect").stdout,
        "docker inspect (host)": subprocess.run(["docker", "inspect", stack.host],
                                                capture_output=True, text=True,
                                                check=True).stdout,
        "reports": stack.sh("cat /var/lib/bmops/reports/* 2>/dev/null || true").stdout,
        "db logs": stack.compose("logs", "db", check=False).stdout,
        "pg_stat_statements": stack.psql(
            "SELECT string_agg(query, E'\\n') FROM pg_stat_statements"),
    }
    for name, blob in blobs.items():
        for label, secret in secrets.items():
            assert secret not in blob, f"{label} appears in {name}"


def rotate(stack, **passwords):
    """Rotate to PASSWORDS in the inventory; site.yml at -vvv, sampling ps."""
    old = stack.passwords()
    stack.set_passwords(**passwords)
    since = stack.sh("date -u +%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    before = container_ids(stack)
    with PsSampler(stack) as sampler:
        result = stack.run("site", verbosity=3)
    assert result.rc == 0, result.stdout[-3000:]
    new = stack.passwords()
    secrets = {f"old {k}": v for k, v in old.items()} | {f"new {k}": v for k, v in new.items()}
    assert_nowhere(stack, result, sampler, secrets)
    return result, before, container_ids(stack), since


@pytest.fixture(scope="module")
def earlier_errors(stack):
    """ERROR lines before this module; afterwards, give the inventory's passwords
    back (the demo vault) and rotate the stack to them, whatever happened."""
    yield errors_in_window(stack)
    _result, before, after, since = rotate(stack)
    assert after["db"] == before["db"]
    assert log_errors_since(stack, since) == {s: [] for s in LOG_SERVICES}
    stack.wait_ready()


def test_redis_password_rotates_without_errors_or_touching_db(stack, earlier_errors):
    result, before, after, since = rotate(stack, bm_redis_password=NEW_REDIS)
    assert stack.ready_status() == 200
    assert after["db"] == before["db"], "the db container was recreated or restarted"
    assert after["redis"] != before["redis"], "redis was not restarted"
    assert log_errors_since(stack, since) == {s: [] for s in LOG_SERVICES}
    assert not task_changed(result, ALTER_TASK)
    assert_daily_check_passes(stack, earlier_errors)


def test_db_password_rotates_role_first_without_errors(stack, earlier_errors):
    result, before, after, since = rotate(stack, bm_redis_password=NEW_REDIS,
                                          bm_db_password=NEW_DB)
    assert stack.ready_status() == 200
    assert after["db"] == before["db"], "the db container was recreated or restarted"
    assert after["redis"] == before["redis"], "redis restarted for a database password"
    assert task_changed(result, ALTER_TASK)
    assert log_errors_since(stack, since) == {s: [] for s in LOG_SERVICES}
    assert_daily_check_passes(stack, earlier_errors)
