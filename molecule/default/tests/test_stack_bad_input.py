# SPDX-License-Identifier: Apache-2.0
"""Bad inputs: the play stops in preflight, names the variable or file and the
fix, and the running stack is untouched (same containers, same compose.yaml).

docker_engine is skipped by tag to keep these runs cheap: its own inputs are
not under test here, and app_stack's preflight runs with every app_stack tag.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest
from conftest import task_results

SKIP_ENGINE = ["--skip-tags", "docker_engine_install,docker_engine_configure,docker_engine_run"]


def _stack_state(host) -> tuple:
    ids = host.check_output(
        "docker ps -q --filter label=com.docker.compose.project=backup-mgmt"
    ).split()
    started = host.check_output("docker inspect -f '{{.Id}} {{.State.StartedAt}}' " + " ".join(ids))
    compose = host.check_output("sha256sum /opt/backup-mgmt/compose.yaml")
    return sorted(started.splitlines()), compose


def _failure(out: dict) -> str:
    msgs = []
    for _, _, res in task_results(out):
        if res.get("failed"):
            msgs.append(str(res.get("msg", "")))
            msgs += [str(r.get("msg", "")) for r in res.get("results", []) if r.get("failed")]
    return " ".join(msgs)


@pytest.fixture
def fake_archive(tmp_path):
    """A `docker save`-shaped archive whose .sha256 does not match it."""
    manifest = json.dumps(
        [{"Config": "0" * 64 + ".json", "RepoTags": ["bmops/bogus:1"], "Layers": []}]
    ).encode()
    path = tmp_path / "bogus-1.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    wrong = hashlib.sha256(b"another build").hexdigest()
    (tmp_path / "bogus-1.tar.sha256").write_text(f"{wrong}  bogus-1.tar\n")
    return path


def _run_bad(host, run_site, *extra):
    before = _stack_state(host)
    rc, out, raw = run_site(*SKIP_ENGINE, *extra)
    assert rc != 0, "the play should have failed"
    assert _stack_state(host) == before, "the running stack was touched"
    return _failure(out) or raw


def test_missing_db_password(host, run_site):
    msg = _run_bad(host, run_site, "-e", '{"bm_db_password": ""}')
    assert "bm_db_password is not set" in msg and "ansible-vault" in msg


def test_missing_redis_password(host, run_site):
    msg = _run_bad(host, run_site, "-e", '{"bm_redis_password": ""}')
    assert "bm_redis_password is not set" in msg and "ansible-vault" in msg


def test_unknown_image_source(host, run_site):
    msg = _run_bad(host, run_site, "-e", "app_stack_image_source=ftp")
    assert "app_stack_image_source" in msg and "registry" in msg and "archive" in msg


def test_archive_checksum_mismatch(host, run_site, fake_archive):
    msg = _run_bad(
        host, run_site, "-e", json.dumps({"app_stack_image_archives": [str(fake_archive)]})
    )
    assert str(fake_archive) in msg and ".sha256" in msg and "Nothing was loaded" in msg
    assert "bmops/bogus" not in host.check_output("docker images --format '{{.Repository}}'")


def test_port_in_use_by_another_service(host, run_site):
    # a foreign listener on the port the stack would publish the backend on
    host.check_output(
        "systemd-run --unit=bmops-squatter python3 -m http.server --bind 127.0.0.1 18000"
    )
    try:
        host.run(
            "for i in $(seq 50); do ss -Htln 'sport = :18000' | grep -q . && break; sleep 0.2; done"
        )
        msg = _run_bad(host, run_site, "-e", "bm_backend_port=18000")
        assert "Port 18000" in msg and "bm_backend_port" in msg
    finally:
        host.run("systemctl stop bmops-squatter")
