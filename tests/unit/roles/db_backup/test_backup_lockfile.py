# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.lockfile: the host lock, taken per run or held across a playbook."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from backup_harness import FILES, run
from bmops_backup.exceptions import ToolError
from bmops_backup.lockfile import Lock


def test_second_run_fails_fast_while_lock_is_held(env):
    rc, held, err = run(env, "lock", "acquire", "--owner", "test", "--ttl", "30")
    assert rc == 0, err
    try:
        t0 = time.monotonic()
        rc, out, _ = run(env, "backup")
        assert rc == 3 and time.monotonic() - t0 < 5
        assert out["error"] == (f"another bmops backup/restore/maintenance run holds "
                                f"{env['tmp'] / 'lock'} (pid {held['pid']})")
        rc, out, _ = run(env, "backup", "--lock-token", "wrong")
        assert rc == 3
        rc, out, _ = run(env, "backup", "--lock-token", held["token"])
        assert rc == 0, out
    finally:
        rc, _, _ = run(env, "lock", "release", "--token", held["token"])
    assert rc == 0
    assert run(env, "backup")[0] == 0


def test_lock_is_exclusive_between_two_processes(tmp_path):
    lock = Lock(str(tmp_path / "l"))
    code = (f"import sys,time;sys.path.insert(0,{str(FILES)!r});"
            f"from bmops_backup.lockfile import Lock;"
            f"l=Lock({str(tmp_path / 'l')!r});l.acquire('child');print('held',flush=True);"
            f"time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(ToolError) as exc:
            lock.acquire("me")
        assert exc.value.code == 3 and f"(pid {child.pid})" in str(exc.value)
    finally:
        child.kill()
        child.wait()
    lock.acquire("me")  # released by the kernel when the holder died
    lock.release()


def hold_in_child(path, seconds=30):
    code = (f"import sys,time;sys.path.insert(0,{str(FILES)!r});"
            f"from bmops_backup.lockfile import Lock;"
            f"l=Lock({str(path)!r});l.acquire('child');print('held',flush=True);"
            f"time.sleep({seconds})")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_lock_file_is_0600_and_its_directory_must_be_private(tmp_path):
    lock = Lock(str(tmp_path / "run" / "bmops.lock"))
    lock.acquire("me")
    lock.release()
    assert (tmp_path / "run" / "bmops.lock").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "run").stat().st_mode & 0o077 == 0
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /run/lock
    with pytest.raises(ToolError) as exc:
        Lock(str(shared / "bmops.lock")).acquire("me")
    assert exc.value.code == 2 and "not be writable by group/others" in str(exc.value)


def test_a_busy_lock_is_waited_for_then_given_up_saying_so(tmp_path):
    path = tmp_path / "l"
    child = hold_in_child(path, seconds=2)
    try:
        t0 = time.monotonic()
        with pytest.raises(ToolError) as exc:
            Lock(str(path)).acquire("me", wait=0.5)
        assert time.monotonic() - t0 >= 0.5
        assert exc.value.code == 3 and "gave up after waiting" in str(exc.value)
        lock = Lock(str(path))
        lock.acquire("me", wait=20)  # the holder exits after 2 s
        assert time.monotonic() - t0 < 15
        lock.release()
    finally:
        child.kill()
        child.wait()


def test_backup_wait_gives_up_naming_the_wait(env):
    child = hold_in_child(env["tmp"] / "lock")
    try:
        rc, out, err = run(env, "backup", "--wait", "1")
        assert rc == 3
        assert "gave up after waiting 1 s" in out["error"]
        assert "waiting up to 1 s" in err
    finally:
        child.kill()
        child.wait()


def test_release_signals_only_the_process_that_holds_the_lock(env, tmp_path):
    rc, held, err = run(env, "lock", "acquire", "--owner", "test", "--ttl", "30")
    assert rc == 0, err
    lock = Lock(str(env["tmp"] / "lock"))
    assert lock.held_by(held["pid"]) and not lock.held_by(1)
    # the file names another (live) process as holder: release signals nobody
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        info = lock.holder()
        forged = {**info, "pid": bystander.pid}
        (env["tmp"] / "lock").write_text(json.dumps(forged))
        rc, out, _ = run(env, "lock", "release", "--token", held["token"])
        assert rc == 3 and "does not hold the lock" in out["error"]
        assert bystander.poll() is None
        (env["tmp"] / "lock").write_text(json.dumps(info))
        assert run(env, "lock", "release", "--token", held["token"])[0] == 0
    finally:
        bystander.kill()
        bystander.wait()
