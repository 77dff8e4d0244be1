# SPDX-License-Identifier: Apache-2.0
"""roles/log_level/files/bmops-log-level (run by the revert timer) with a fake docker."""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import ROOT

TOOL = ROOT / "roles" / "log_level" / "files" / "bmops-log-level"


@pytest.fixture
def fake_docker(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "docker.args"
    script = bin_dir / "docker"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return env, record


def run(env, *args):
    return subprocess.run(["sh", str(TOOL), *args], capture_output=True, text=True, env=env)


def test_writes_the_level_and_signals_the_services(tmp_path, fake_docker):
    env, record = fake_docker
    level_file = tmp_path / "log_level"
    level_file.write_text("DEBUG\n")
    proc = run(env, str(level_file), "/opt/backup-mgmt", "backup-mgmt", "INFO", "backend",
               "celery")
    assert proc.returncode == 0, proc.stderr
    assert level_file.read_text() == "INFO\n"
    assert oct(level_file.stat().st_mode & 0o777) == "0o644"
    assert record.read_text().split("\n")[:-1] == [
        "compose", "--project-directory", "/opt/backup-mgmt", "--project-name", "backup-mgmt",
        "kill", "-s", "SIGUSR1", "backend", "celery"]
    assert not list(tmp_path.glob("log_level.tmp.*"))


@pytest.mark.parametrize("args", [["f", "d", "n", "LOUD", "backend"], ["f", "d", "n", "INFO"]])
def test_refuses_bad_arguments(tmp_path, fake_docker, args):
    env, record = fake_docker
    proc = run(env, *[str(tmp_path / a) if a == "f" else a for a in args])
    assert proc.returncode == 2
    assert not record.exists()
    assert not (tmp_path / "f").exists()
