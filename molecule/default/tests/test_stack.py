# SPDX-License-Identifier: Apache-2.0
"""Verify the full stack after converge (and idempotence) of playbooks/site.yml."""

from __future__ import annotations

import json

import pytest
from conftest import task_results

PROJECT = "/opt/backup-mgmt"
SERVICES = ["backend", "celery", "celery-beat", "db", "redis"]


def _containers(host) -> list[dict]:
    ids = host.check_output(
        "docker ps -aq --filter label=com.docker.compose.project=backup-mgmt"
    ).split()
    assert ids, "no container of the backup-mgmt project"
    return json.loads(host.check_output("docker inspect " + " ".join(ids)))


def _psql(host, sql: str) -> str:
    return host.check_output(
        f'cd {PROJECT} && docker compose exec -T db psql -XtA -U postgres -d backup_mgmt -c "{sql}"'
    )


def test_docker_is_active_and_enabled(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_daemon_json_keeps_logs_and_live_restore(host):
    conf = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert conf["log-driver"] == "journald"
    assert conf["log-opts"] == {"tag": "{{.Name}}"}
    assert conf["live-restore"] is True


def test_journal_keeps_container_logs_30_days_on_disk(host):
    """Manual 5.1: application logs 30 days, by age (role docker_engine)."""
    dropin = host.file("/etc/systemd/journald.conf.d/50-bmops.conf")
    assert "MaxRetentionSec=30day" in dropin.content_string
    assert "Storage=persistent" in dropin.content_string
    assert host.file("/var/log/journal").is_directory
    assert "MaxRetentionSec=30day" in host.check_output(
        "systemd-analyze cat-config systemd/journald.conf")


def test_every_container_logs_to_the_journal_under_its_name(host):
    for c in _containers(host):
        assert c["HostConfig"]["LogConfig"] == {"Type": "journald",
                                                "Config": {"tag": "{{.Name}}"}}, c["Name"]


def test_the_manuals_docker_logs_backup_backend_works(host):
    """`docker logs backup-backend` (manual 3.2) and the journal read the same lines."""
    host.check_output("curl -fsS -o /dev/null http://127.0.0.1:8000/health/live")
    docker_logs = host.run("docker logs --tail 50 backup-backend")
    assert docker_logs.rc == 0, docker_logs.stderr
    assert (docker_logs.stdout + docker_logs.stderr).strip()
    journal = host.check_output("journalctl -t backup-backend -n 5 -o cat --no-pager")
    assert journal.strip()


def test_dockerd_environment_dropin(host):
    env = host.check_output("systemctl show docker --property=Environment")
    assert "DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1" in env


def test_five_services_running_and_healthy(host):
    state = {
        c["Config"]["Labels"]["com.docker.compose.service"]: c["State"] for c in _containers(host)
    }
    assert sorted(state) == sorted(SERVICES)
    for service, st in state.items():
        assert st["Status"] == "running", service
        assert st["Health"]["Status"] == "healthy", service


def test_health_checks_run_every_two_seconds_while_starting(host):
    # app_stack_healthcheck_start_interval: a ready service is healthy within seconds
    for c in _containers(host):
        check = c["Config"]["Healthcheck"]
        assert check["StartInterval"] == 2_000_000_000, c["Name"]
        assert check["Interval"] == 10_000_000_000 and check["StartPeriod"] == 30_000_000_000


def test_restart_policies(host):
    for c in _containers(host):
        assert c["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


@pytest.mark.parametrize(
    "path,uid",
    [
        (f"{PROJECT}/secrets/db_password", 10001),  # app_stack_backend_uid of the demo
        (f"{PROJECT}/secrets/redis_password", 10001),
        (f"{PROJECT}/secrets/redis.conf", 999),  # redis runs as 999 and reads it
    ],
)
def test_secret_files_are_private(host, path, uid):
    f = host.file(path)
    assert f.is_file
    assert f.mode == 0o600
    assert f.uid == uid
    assert f.gid == 0


def test_secret_dir_is_root_only(host):
    d = host.file(f"{PROJECT}/secrets")
    assert d.is_directory and d.mode == 0o700 and d.user == "root"


def test_no_secret_in_container_config_or_compose_file(host, demo_vars):
    secrets = [demo_vars["bm_db_password"], demo_vars["bm_redis_password"]]
    for c in _containers(host):
        cfg = c["Config"]
        exposed = {
            "Cmd": cfg.get("Cmd"),
            "Entrypoint": cfg.get("Entrypoint"),
            "Args": c.get("Args"),
            "Labels": cfg.get("Labels"),
            "Env": cfg.get("Env"),
            "Healthcheck": cfg.get("Healthcheck"),
        }
        text = json.dumps(exposed)
        for s in secrets:
            assert s not in text, f"secret visible in docker inspect of {c['Name']}"
    compose = host.file(f"{PROJECT}/compose.yaml").content_string
    for s in secrets:
        assert s not in compose


def test_secrets_reach_services_as_files(host):
    env = {
        c["Config"]["Labels"]["com.docker.compose.service"]: c["Config"]["Env"]
        for c in _containers(host)
    }
    assert "DB_PASSWORD_FILE=/run/secrets/db_password" in env["backend"]
    assert "REDIS_PASSWORD_FILE=/run/secrets/redis_password" in env["celery"]
    assert "POSTGRES_PASSWORD_FILE=/run/secrets/db_password" in env["db"]


@pytest.mark.parametrize("port", [5432, 8000, 6379, 9090, 9093, 9100, 9115, 9121, 9187])
def test_published_on_loopback_only(host, port):
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert not host.socket(f"tcp://:::{port}").is_listening
    for c in _containers(host):
        for bindings in (c["HostConfig"].get("PortBindings") or {}).values():
            for b in bindings:
                assert b["HostIp"] == "127.0.0.1", c["Name"]


def test_db_has_shm_and_named_volume(host):
    db = next(
        c for c in _containers(host) if c["Config"]["Labels"]["com.docker.compose.service"] == "db"
    )
    assert db["HostConfig"]["ShmSize"] == 256 * 1024 * 1024
    mounts = {m["Destination"]: m for m in db["Mounts"]}
    assert mounts["/var/lib/postgresql/data"]["Type"] == "volume"


def test_log_level_bind_mount(host):
    backend = next(
        c
        for c in _containers(host)
        if c["Config"]["Labels"]["com.docker.compose.service"] == "backend"
    )
    mounts = {m["Destination"]: m for m in backend["Mounts"]}
    assert mounts["/run/backup-mgmt"]["Source"] == f"{PROJECT}/run"
    assert host.file(f"{PROJECT}/run/log_level").content_string.strip() == "INFO"


def test_health_ready(host):
    out = host.check_output("curl -fsS http://127.0.0.1:8000/health/ready")
    assert json.loads(out)["status"] == "ok"


def test_pg_stat_statements_loaded(host):
    assert "pg_stat_statements" in _psql(host, "SHOW shared_preload_libraries")
    assert (
        _psql(host, "SELECT extname FROM pg_extension WHERE extname = 'pg_stat_statements'")
        == "pg_stat_statements"
    )
    int(_psql(host, "SELECT count(*) FROM pg_stat_statements"))


def test_redis_requires_the_password(host):
    r = host.run(f"cd {PROJECT} && docker compose exec -T redis redis-cli -h 127.0.0.1 ping")
    assert "NOAUTH" in r.stdout + r.stderr


def test_check_mode_reports_no_change(run_site):
    """site.yml --check after converge: nothing would change."""
    rc, out, raw = run_site("--check")
    assert rc == 0, raw[-3000:]
    changed = [(name, h) for name, h, res in task_results(out) if res.get("changed")]
    assert changed == [], f"check mode would change: {changed}"
    assert all(s["changed"] == 0 for s in out["stats"].values()), out["stats"]


def test_db_runs_with_minimal_wal(host):
    # no replica, no WAL archive: restores skip WAL for the tables they create
    assert _psql(host, "SHOW wal_level") == "minimal"
    assert _psql(host, "SHOW max_wal_senders") == "0"


@pytest.mark.parametrize("unit", [
    "prometheus", "prometheus-alertmanager", "prometheus-node-exporter",
    "prometheus-blackbox-exporter", "prometheus-postgres-exporter",
    "prometheus-redis-exporter", "bmops-app-metrics.timer"])
def test_monitoring_runs_beside_the_app(host, unit):
    """Single-host layout (no bm_monitoring host): everything on 127.0.0.1."""
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled


def test_exporter_secrets_are_private(host):
    for name in ("prometheus-postgres-exporter", "prometheus-redis-exporter"):
        f = host.file(f"/etc/default/{name}")
        assert f.mode == 0o600 and f.user == "root"
    assert host.file("/etc/prometheus/alertmanager.yml").mode == 0o640


def test_quarterly_review_tools_installed_from_the_os_packages(host):
    """site.yml installs what playbooks/quarterly_review.yml runs (the review installs nothing)."""
    for package in ("lynis", "testssl.sh", "wrk"):
        assert host.package(package).is_installed
    state = host.file("/var/lib/bmops/review")
    assert state.is_directory and state.mode == 0o700 and state.user == "root"
