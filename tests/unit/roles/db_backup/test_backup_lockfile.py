# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.lockfile: the host lock, taken per run or held across a playbook."""

from __future__ import annotations

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
