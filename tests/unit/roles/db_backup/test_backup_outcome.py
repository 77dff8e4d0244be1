# SPDX-License-Identifier: Apache-2.0
"""bmops_backup: every run leaves its outcome, whatever ended it (the tool's errors, an
OS error such as a full disk, a signal), and publishing never leaves a final archive
without its manifest.  The full disk is simulated at the one call that fails (a real
one is not needed to check what the run does next)."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import time

import pytest
from backup_harness import TOOL, files, run, tool_env
from bmops_backup import backup_executor, cli


def prom(env) -> str:
    return (env["prom"] / "bmops_backup.prom").read_text()


def state(env, name) -> dict:
    return json.loads((env["tmp"] / "state" / name).read_text())


def no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_publishing_leaves_no_orphan_and_records_the_failure(
        env, monkeypatch, capsys):
    assert run(env, "backup")[0] == 0
    before = files(env["dir"])
    monkeypatch.setattr(backup_executor, "write_manifest", no_space)
    t0 = time.time()
    assert cli.main(["--config", str(env["cfg"]), "backup", "--scheduled"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert files(env["dir"]) == before  # no archive without manifest, no .partial
    assert out["error"].startswith(f"backup failed during publish (backup directory "
                                   f"{env['dir']}): [Errno 28] No space left on device; "
                                   f"the file system of {env['dir']} has ")
    assert "bmops_backup_last_run_success 0" in prom(env)
    stamp = int(re.search(r"^bmops_backup_last_run_timestamp_seconds (\d+)$", prom(env),
                          re.MULTILINE)[1])
    assert stamp >= int(t0)  # this run's time, not the previous run's
    assert "bmops_backup_last_scheduled_run_success 0" in prom(env)
    last = state(env, "last-scheduled-run.json")
    assert last["ok"] is False and last["phase"] == "publish" and last["scheduled"] is True


def test_rename_failing_after_the_manifest_removes_the_manifest(env, monkeypatch, capsys):
    real_rename = os.rename

    def rename(src, dst):
        if str(src).endswith(".partial"):
            raise OSError(errno.EIO, "Input/output error")
        return real_rename(src, dst)

    monkeypatch.setattr(backup_executor.os, "rename", rename)
    assert cli.main(["--config", str(env["cfg"]), "backup"]) == 1
    assert files(env["dir"]) == []
    assert "during publish" in json.loads(capsys.readouterr().out)["error"]


def test_sigterm_during_the_dump_is_recorded_and_cleans_up(env, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "hang")
    proc = subprocess.Popen([*TOOL, "--config", str(env["cfg"]), "backup", "--scheduled"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=tool_env())
    deadline = time.monotonic() + 20
    while not any(n.endswith(".partial") for n in files(env["dir"])):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert json.loads(out)["error"].startswith("backup failed during dump (host file ")
    assert "interrupted by signal 15" in json.loads(out)["error"]
    assert files(env["dir"]) == []
    assert "bmops_backup_last_run_success 0" in prom(env)
    assert state(env, "last-run.json")["phase"] == "dump"
    # every log line starts with its UTC time
    assert err.strip() and all(line[:4].isdigit() and line[19] == "Z"
                               for line in err.strip().splitlines())


@pytest.mark.parametrize("scheduled_args", [["--scheduled"], []])
def test_status_reports_the_newest_backup_and_the_last_scheduled_run(
        env, monkeypatch, scheduled_args):
    rc, first, _ = run(env, "backup", "--scheduled")
    assert rc == 0
    monkeypatch.setenv("FAKE_MODE", "fail")
    assert run(env, "backup", *scheduled_args)[0] == 1
    monkeypatch.setenv("FAKE_MODE", "ok")
    rc, status, _ = run(env, "status")
    assert rc == 0
    assert status["newest_verified"]["id"] == first["id"]
    assert 0 <= status["newest_verified"]["age_seconds"] < 60
    assert status["last_run"]["ok"] is False and status["last_run"]["phase"] == "dump"
    # a manual run that fails is not the scheduled run's outcome
    scheduled_ok = not scheduled_args
    assert status["last_scheduled_run"]["ok"] == scheduled_ok
    assert f"bmops_backup_last_scheduled_run_success {int(scheduled_ok)}" in prom(env)


def test_status_without_any_run(env):
    rc, status, _ = run(env, "status")
    assert rc == 0 and status["newest_verified"] is None
    assert status["last_run"] is None and status["last_scheduled_run"] is None
