# SPDX-License-Identifier: Apache-2.0
"""The host-wide lock shared by backup, restore and maintenance runs.

A command takes the flock for its own run (``LockSession``), or rides a lock that a
playbook holds across several steps: ``lock acquire`` forks a detached holder with a
TTL and prints its token; steps pass the token (``--lock-token`` or
BMOPS_LOCK_TOKEN); ``lock release`` ends the holder.  Role host_lock wraps the two.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import signal
import time

from .exceptions import EXIT_LOCKED, ToolError
from .utils import iso, pid_alive


class Lock:
    """Host-wide flock shared by backup, restore and maintenance runs."""

    def __init__(self, path: str):
        self.path = path
        self.fd = None

    def _open(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def holder(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return json.loads(fh.read() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self, owner: str, token: str | None = None) -> None:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                pid = self.holder().get("pid", "?")
                raise ToolError(
                    f"another bmops backup/restore/maintenance run holds {self.path} "
                    f"(pid {pid})", EXIT_LOCKED) from None
            raise
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

    def __init__(self, cfg: dict, owner: str, token: str | None):
        self.lock = Lock(cfg["lock_file"])
        self.owner = owner
        self.token = token

    def __enter__(self):
        if self.token:
            info = self.lock.holder()
            if (info.get("token") != self.token or not pid_alive(info.get("pid"))
                    or self.lock.is_free()):
                raise ToolError(f"lock token does not match the holder of {self.lock.path} "
                                "(expired or released?)", EXIT_LOCKED)
        else:
            self.lock.acquire(self.owner)
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
        if info.get("token") != args.token:
            raise ToolError("lock token does not match the current holder", EXIT_LOCKED)
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
