# SPDX-License-Identifier: Apache-2.0
"""Verify the smoke scenario: systemd host healthy, Docker inside, image loaded."""

import time

import pytest


def _system_state(host, timeout=90):
    """`systemctl is-system-running` once the boot has settled."""
    deadline = time.monotonic() + timeout
    while True:
        state = host.run("systemctl is-system-running").stdout.strip()
        if state not in ("initializing", "starting") or time.monotonic() > deadline:
            return state
        time.sleep(2)


def test_systemd_is_running_without_failed_units(host):
    state = _system_state(host)
    failed = host.run("systemctl list-units --failed --plain --no-legend").stdout.strip()
    assert state in ("running", "degraded"), f"system state {state!r}"
    assert failed == "", f"failed units:\n{failed}"


def test_docker_is_active_and_enabled(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_dockerd_has_sandbox_environment(host):
    env = host.check_output("systemctl show docker --property=Environment")
    assert "DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1" in env


def test_inner_docker_uses_overlay2_on_its_volume(host):
    assert host.check_output("docker info --format '{{.Driver}}'") == "overlay2"


def test_archive_checksum_file_matches(host):
    assert (
        host.run("cd /var/tmp/bmops-images && sha256sum --check --strict redis-7.tar.sha256").rc
        == 0
    )


@pytest.mark.parametrize("image", ["bmops/redis:7"])
def test_loaded_image_runs(host, image):
    out = host.run(f"docker run --rm {image} redis-server --version")
    assert out.rc == 0, out.stderr
    assert "Redis server v=7." in out.stdout


def test_loaded_image_serves(host):
    name = "bmops-smoke-redis"
    host.run(f"docker rm -f {name}")
    try:
        assert host.run(f"docker run -d --name {name} bmops/redis:7").rc == 0
        for _ in range(30):
            if host.run(f"docker exec {name} redis-cli ping").stdout.strip() == "PONG":
                break
            time.sleep(1)
        else:
            pytest.fail("redis in the inner container never answered PING")
    finally:
        host.run(f"docker rm -f -v {name}")
