# SPDX-License-Identifier: Apache-2.0
"""The host-wide lock shared by backup, restore and maintenance runs.

A command takes the flock for its own run (``LockSession``): the kernel drops it when
that process dies, so a dead run never blocks the next one.  A playbook can also hold
it across several steps: ``lock acquire`` forks a detached holder with a TTL and
prints its token; steps pass the token (``--lock-token`` or BMOPS_LOCK_TOKEN);
``lock release`` ends the holder, after checking that the PID it signals really holds
the flock.  Role host_lock wraps the two.  The lock file is 0600 in a directory only
its owner (root) can write (bm_lock_file, /run/bmops/bmops.lock).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import signal
import time

from .exceptions import EXIT_LOCKED, EXIT_USAGE, ToolError
from .utils import iso, log, pid_alive


class Lock:
    """Host-wide flock shared by backup, restore and maintenance runs."""

    def __init__(self, path: str):
        self.path = path
        self.fd = None

    def _open(self):
        parent = os.path.dirname(self.path) or "."
        os.makedirs(parent, mode=0o700, exist_ok=True)
        st = os.stat(parent)
        if st.st_mode & 0o022 or st.st_uid != os.geteuid():
            raise ToolError(f"refusing lock file {self.path}: its directory {parent} must "
                            "belong to this user and not be writable by group/others "
                            "(e.g. /run/bmops, 0700)", EXIT_USAGE)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        return fd

    def holder(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return json.loads(fh.read() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self, owner: str, token: str | None = None, wait: float = 0) -> None:
        """Take the flock; when busy, retry for up to ``wait`` seconds, then give up."""
        fd = self._open()
        deadline = time.monotonic() + max(0.0, float(wait))
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            info = self.holder()
            if time.monotonic() >= deadline:
                os.close(fd)
                waited = (f"; gave up after waiting {int(wait)} s for it (owner "
                          f"{info.get('owner', '?')})") if wait else ""
                raise ToolError(
                    f"another bmops backup/restore/maintenance run holds {self.path} "
                    f"(pid {info.get('pid', '?')}){waited}", EXIT_LOCKED)
            if not said:
                log(f"{self.path} is held by pid {info.get('pid', '?')} "
                    f"({info.get('owner', '?')}): waiting up to {int(wait)} s")
                said = True
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        self.fd = fd
        info = {"pid": os.getpid(), "owner": owner, "since": iso(time.time())}
        if token:
            info["token"] = token
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def held_by(self, pid) -> bool:
        """Whether process ``pid`` holds the flock on this file (/proc/locks)."""
        try:
            ino = os.stat(self.path).st_ino
            with open("/proc/locks", encoding="ascii") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return pid_alive(pid) and not self.is_free()
        for line in lines:
            f = line.split()
            if "->" in f:  # a waiter, not a holder
                continue
            if (len(f) >= 6 and f[1] == "FLOCK" and f[5].rsplit(":", 1)[-1] == str(ino)
                    and f[4] == str(pid)):
                return True
        return False

    def is_free(self) -> bool:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)


class LockSession:
    """Take the lock for this command, or ride on a playbook's lock via its token."""

    def __init__(self, cfg: dict, owner: str, token: str | None, wait: float = 0):
        self.lock = Lock(cfg["lock_file"])
        self.owner = owner
        self.token = token
        self.wait = wait
        # The token child processes of this run ride the lock with (SafetyBackup).
        self.child_token = token

    def __enter__(self):
        if self.token:
            info = self.lock.holder()
            if info.get("token") != self.token or not self.lock.held_by(info.get("pid")):
                raise ToolError(f"lock token does not match the holder of {self.lock.path} "
                                "(expired or released?)", EXIT_LOCKED)
        else:
            self.child_token = secrets.token_hex(16)
            self.lock.acquire(self.owner, token=self.child_token, wait=self.wait)
        return self

    def __exit__(self, *exc):
        self.lock.release()
        return False


def lock_hold_forever(cfg: dict, owner: str, ttl: int, wfd: int) -> None:
    """Daemon body of ``lock acquire``: hold the flock until TTL or SIGTERM."""
    lock = Lock(cfg["lock_file"])
    token = secrets.token_hex(16)
    try:
        lock.acquire(owner, token=token)
    except ToolError as exc:
        os.write(wfd, json.dumps({"ok": False, "error": str(exc)}).encode())
        os._exit(EXIT_LOCKED)
    deadline = time.time() + ttl
    os.write(wfd, json.dumps({"ok": True, "token": token, "pid": os.getpid(),
                              "expires": iso(deadline)}).encode())
    os.close(wfd)
    signal.signal(signal.SIGTERM, lambda *_: (lock.release(), os._exit(0)))
    while time.time() < deadline:
        time.sleep(min(5.0, max(0.1, deadline - time.time())))
    lock.release()
    os._exit(0)


def cmd_lock(cfg: dict, args) -> dict:
    lock = Lock(cfg["lock_file"])
    if args.action == "status":
        return {"ok": True, "free": lock.is_free(),
                "holder": {k: v for k, v in lock.holder().items() if k != "token"}}
    if args.action == "release":
        info = lock.holder()
        if not args.token or info.get("token") != args.token:
            raise ToolError("lock token does not match the current holder", EXIT_LOCKED)
        if not lock.held_by(info.get("pid")):
            raise ToolError(f"pid {info.get('pid')} named in {lock.path} does not hold the "
                            "lock: nothing signalled (the holder is gone)", EXIT_LOCKED)
        os.kill(int(info["pid"]), signal.SIGTERM)
        for _ in range(100):
            if lock.is_free():
                return {"ok": True, "released": True}
            time.sleep(0.05)
        raise ToolError(f"lock holder pid {info['pid']} did not exit")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: detach and hold the lock
        os.close(rfd)
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        lock_hold_forever(cfg, args.owner, args.ttl, wfd)
    os.close(wfd)
    os.waitpid(pid, 0)
    data = b""
    while chunk := os.read(rfd, 4096):
        data += chunk
    os.close(rfd)
    result = json.loads(data or b'{"ok": false, "error": "lock holder died"}')
    if not result["ok"]:
        raise ToolError(result["error"], EXIT_LOCKED)
    return result
