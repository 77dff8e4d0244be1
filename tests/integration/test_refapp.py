# SPDX-License-Identifier: Apache-2.0
"""The reference backend (tests/refapp) against real PostgreSQL and Redis containers.

One stack per module on its own Docker network: bmops/postgres:15, bmops/redis:7
and backend, worker and beat from bmops/backend:ref. The tests run in file order
and share the stack; each one waits for the state it needs first.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import docker
import psycopg
import pytest

pytestmark = pytest.mark.integration

IMAGES = ("bmops/postgres:15", "bmops/redis:7", "bmops/backend:ref")
PREFIX = "bmops-refapp-"
FAILURE_TEXT = "simulated failure: storage target did not answer"


class Stack:
    """Containers of one test stack, addressed by role (db, redis, backend, ...)."""

    def __init__(self, client: docker.DockerClient, tag: str, conf_dir: Path) -> None:
        self.client = client
        self.tag = tag
        self.conf_dir = conf_dir
        self.db_password = secrets.token_urlsafe(12)
        self.redis_password = secrets.token_urlsafe(12)
        self.network = client.networks.create(f"{PREFIX}{tag}", driver="bridge")
        self.containers: dict[str, docker.models.containers.Container] = {}

    def name(self, role: str) -> str:
        return f"{PREFIX}{self.tag}-{role}"

    def run(self, role: str, image: str, command=None, **kwargs):
        container = self.client.containers.run(
            image, command, name=self.name(role), network=self.network.name, detach=True, **kwargs
        )
        self.containers[role] = container
        return container

    def app_env(self, **extra: str) -> dict[str, str]:
        return {
            "DB_HOST": self.name("db"),
            "DB_NAME": "backup_mgmt",
            "DB_USER": "postgres",
            "REDIS_HOST": self.name("redis"),
            "JOB_INTERVAL_SECONDS": "2",
            "JOB_DURATION_SECONDS": "0.5",
            **extra,
        }

    def run_app(self, role: str, command: str, **env: str):
        # Passwords by value and by file: both ways of the contract are in use.
        secrets_dir = str(self.conf_dir / "secrets")
        levels_dir = str(self.conf_dir / "run")
        return self.run(
            role,
            "bmops/backend:ref",
            command,
            environment=self.app_env(
                DB_PASSWORD_FILE="/run/secrets/db_password",  # noqa: S106 - a path
                REDIS_PASSWORD=self.redis_password,
                **env,
            ),
            volumes={
                secrets_dir: {"bind": "/run/secrets", "mode": "ro"},
                levels_dir: {"bind": "/run/backup-mgmt", "mode": "ro"},
            },
        )

    def ip(self, role: str) -> str:
        container = self.containers[role]
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"][self.network.name]["IPAddress"]

    def get(self, path: str) -> tuple[int, dict, float]:
        """(status, JSON body, seconds) of GET path on the backend."""
        url = f"http://{self.ip('backend')}:8000{path}"
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        return status, json.loads(data), time.monotonic() - start

    def logs(self, role: str) -> str:
        return self.containers[role].logs().decode(errors="replace")

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(
            host=self.ip("db"),
            dbname="backup_mgmt",
            user="postgres",
            password=self.db_password,
            connect_timeout=3,
        ) as conn:
            return conn.execute(query, params).fetchall()

    def stray_lines(self) -> dict[str, list[str]]:
        """Log lines of the app containers that are not in the documented format."""
        pattern = re.compile(
            r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) \w+ "
        )
        return {
            role: [line for line in self.logs(role).splitlines() if not pattern.match(line)]
            for role in self.containers
            if role not in ("db", "redis")
        }

    def remove(self) -> None:
        for container in self.containers.values():
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        self.network.remove()


def wait_for(what: str, predicate: Callable[[], object], timeout: float, pause: float = 0.5):
    """Poll until predicate returns a truthy value (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except Exception as exc:  # not there yet (connection refused, HTTP error, ...)
            result, last = None, exc
        if result:
            return result
        time.sleep(pause)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last error: {last!r})")


def log_lines(stack: Stack, role: str, level: str, text: str) -> list[str]:
    return [
        line
        for line in stack.logs(role).splitlines()
        if line.split(" ")[1:3] == [level, role.split("-")[0]] and text in line
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    client = docker.from_env()
    missing = []
    for image in IMAGES:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        pytest.fail(
            f"missing images {', '.join(missing)}: run `make images` first "
            "(bmops/backend:ref alone: docker build -t bmops/backend:ref tests/refapp)",
            pytrace=False,
        )
    conf_dir = tmp_path_factory.mktemp("refapp")
    s = Stack(client, secrets.token_hex(4), conf_dir)
    # The app runs as uid 10001: the bind-mounted files must be readable by others.
    for sub in ("secrets", "run"):
        (conf_dir / sub).mkdir(mode=0o755)
        (conf_dir / sub).chmod(0o755)
    (conf_dir / "secrets" / "db_password").write_text(s.db_password + "\n")
    (conf_dir / "secrets" / "db_password").chmod(0o644)
    (conf_dir / "run" / "log_level").write_text("INFO\n")
    (conf_dir / "run" / "log_level").chmod(0o644)
    try:
        s.run(
            "db",
            "bmops/postgres:15",
            environment={"POSTGRES_PASSWORD": s.db_password, "POSTGRES_DB": "backup_mgmt"},
        )
        s.run("redis", "bmops/redis:7", ["redis-server", "--requirepass", s.redis_password])
        # Started together on purpose: the app must wait for the database itself.
        s.run_app("backend", "backend")
        s.run_app("worker", "worker", JOB_FAILURE_RATIO="0.0")
        s.run_app("beat", "beat")
        yield s
    finally:
        s.remove()


def wait_ready(stack: Stack, timeout: float = 40) -> dict:
    def ready() -> dict | None:
        status, body, _ = stack.get("/health/ready")
        return body if status == 200 else None

    return wait_for("/health/ready to answer 200", ready, timeout)


def test_live_and_ready(stack):
    wait_ready(stack)
    status, body, _ = stack.get("/health/live")
    assert (status, body) == (200, {"status": "ok"})
    status, body, elapsed = stack.get("/health/ready")
    assert (status, body) == (200, {"status": "ok", "checks": {"db": "ok", "redis": "ok"}})
    assert elapsed < 2.5


def test_schema_seed_and_start_audit_row(stack):
    wait_ready(stack)
    audit = wait_for(
        "the backend.start audit row",
        lambda: stack.sql("SELECT actor, detail FROM audit_logs WHERE action = 'backend.start'"),
        20,
    )
    assert audit[0][0] == "backend"
    assert isinstance(audit[0][1], dict)
    assert len(stack.sql("SELECT name FROM storage_targets")) >= 2
    indexes = {row[0] for row in stack.sql("SELECT indexname FROM pg_indexes")}
    assert "audit_logs_created_at_idx" in indexes
    with pytest.raises(psycopg.errors.CheckViolation):
        stack.sql("INSERT INTO backup_jobs (name, status) VALUES ('x', 'lost') RETURNING id")


def test_beat_and_worker_record_successful_jobs(stack):
    rows = wait_for(
        "a successful backup_jobs row",
        lambda: stack.sql(
            "SELECT started_at, finished_at, bytes, error FROM backup_jobs WHERE status = 'success'"
        ),
        30,
    )
    started, finished, size, error = rows[0]
    assert started <= finished
    assert size > 0
    assert error is None
    status, summary, _ = stack.get("/api/jobs/summary")
    assert status == 200
    assert summary["success"] >= 1
    assert set(summary) == {"queued", "running", "success", "failed"}


def test_failure_ratio_one_fails_every_job_and_logs_error(stack):
    stack.containers["worker"].stop(timeout=10)
    assert stack.containers["worker"].wait(timeout=5)["StatusCode"] == 0
    already = stack.sql("SELECT coalesce(max(id), 0) FROM backup_jobs")[0][0]
    stack.run_app("worker-failing", "worker", JOB_FAILURE_RATIO="1.0")
    rows = wait_for(
        "failed backup_jobs rows from the failing worker",
        lambda: stack.sql(
            "SELECT id, status, error, finished_at FROM backup_jobs WHERE id > %s"
            " AND finished_at IS NOT NULL ORDER BY id",
            (already,),
        ),
        30,
    )
    assert {row[1] for row in rows} == {"failed"}
    assert {row[2] for row in rows} == {FAILURE_TEXT}
    job_id = rows[0][0]
    assert wait_for(
        "an ERROR line in the worker log",
        lambda: log_lines(stack, "worker-failing", "ERROR", f"backup job {job_id} failed"),
        10,
    )


def test_sigusr1_switches_the_log_level(stack):
    level_file = stack.conf_dir / "run" / "log_level"
    backend = stack.containers["backend"]
    wait_ready(stack)
    assert not log_lines(stack, "backend", "DEBUG", "ready probe")

    level_file.write_text("DEBUG\n")
    backend.kill(signal="SIGUSR1")
    wait_for(
        "'log level changed to DEBUG'",
        lambda: log_lines(stack, "backend", "INFO", "log level changed to DEBUG"),
        10,
    )
    stack.get("/health/ready")
    wait_for("a DEBUG line", lambda: log_lines(stack, "backend", "DEBUG", "ready probe"), 10)
    for role in ("worker-failing", "beat"):  # the same switch in the Celery roles
        stack.containers[role].kill(signal="SIGUSR1")
        wait_for(
            f"'log level changed to DEBUG' from {role}",
            lambda role=role: log_lines(stack, role, "INFO", "log level changed to DEBUG"),
            10,
        )
        wait_for(
            f"a DEBUG line from {role}", lambda role=role: log_lines(stack, role, "DEBUG", ""), 10
        )

    level_file.write_text("LOUD\n")
    backend.kill(signal="SIGUSR1")
    wait_for(
        "a WARNING about the unknown level",
        lambda: log_lines(stack, "backend", "WARNING", "unknown log level 'LOUD'"),
        10,
    )
    probes = len(log_lines(stack, "backend", "DEBUG", "ready probe"))
    stack.get("/health/ready")
    wait_for(
        "DEBUG still on after the invalid level",
        lambda: len(log_lines(stack, "backend", "DEBUG", "ready probe")) > probes,
        10,
    )
    level_file.write_text("INFO\n")
    backend.kill(signal="SIGUSR1")
    wait_for(
        "'log level changed to INFO'",
        lambda: log_lines(stack, "backend", "INFO", "log level changed to INFO"),
        10,
    )


@pytest.mark.parametrize("role", ["db", "redis"])
def test_ready_names_the_stopped_dependency_and_recovers(stack, role):
    wait_ready(stack)
    stack.containers[role].stop(timeout=10)
    try:
        status, body, elapsed = stack.get("/health/ready")
        assert status == 503
        assert body["status"] == "fail"
        assert body["failed"] == [role]
        assert body["checks"][role] != "ok"
        assert elapsed < 3.0, "readiness must answer within its check timeout"
        assert stack.get("/health/live")[0] == 200
        assert log_lines(stack, "backend", "WARNING", f"not ready: {role}")
    finally:
        stack.containers[role].start()
    body = wait_ready(stack, timeout=30)
    assert body["checks"] == {"db": "ok", "redis": "ok"}


def test_healthcheck_command_per_role(stack):
    wait_ready(stack)
    for role in ("backend", "worker-failing", "beat"):
        result = stack.containers[role].exec_run(["refapp", "healthcheck"])
        assert result.exit_code == 0, (role, result.output)
    # The image's HEALTHCHECK is this command.
    image = stack.client.images.get("bmops/backend:ref")
    assert image.attrs["Config"]["Healthcheck"]["Test"] == ["CMD", "refapp", "healthcheck"]


def test_sigterm_stops_every_role_cleanly(stack):
    for role in ("backend", "beat", "worker-failing"):
        container = stack.containers[role]
        start = time.monotonic()
        container.stop(timeout=10)
        assert container.wait(timeout=5)["StatusCode"] == 0, stack.logs(role)
        assert time.monotonic() - start < 5, f"{role} did not stop promptly on SIGTERM"
        assert log_lines(stack, role, "INFO", "stopped"), stack.logs(role)


def test_every_log_line_is_in_the_documented_format(stack):
    # Celery and kombu print their own shutdown notices on stderr, outside any
    # logger (README.md, "Logs"): the warm-shutdown line, and kombu's line for
    # prefetched tasks handed back to Redis when a job is still queued.
    celery_notice = re.compile(
        r"^(|worker: Warm shutdown \(MainProcess\)|Restoring \d+ unacknowledged message\(s\))$"
    )
    for role, lines in stack.stray_lines().items():
        assert all(celery_notice.match(line) for line in lines), (role, lines)
