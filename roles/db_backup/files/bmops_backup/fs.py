# SPDX-License-Identifier: Apache-2.0
"""Files: durable writes on the host, and the db container's filesystem reached from
the host through /proc/<pid>/root (the directory format's data path)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile

from .command_wrappers import run_in_db
from .config import find_container
from .exceptions import ToolError
from .utils import pid_alive


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, text: str, mode: int = 0o600) -> None:
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path)
        fsync_dir(d)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ContainerFS:
    """The db container's filesystem, reached from the host through /proc/<pid>/root."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        ref = find_container(cfg)
        if not ref:
            raise ToolError(f"cannot find the running {cfg['service']} container of Compose "
                            f"project {cfg['project_name']} (docker ps by its labels); set "
                            "container in the config (db_backup_container)")
        res = subprocess.run([cfg["docker"], "inspect", "-f", "{{.State.Pid}} {{.Config.User}}",
                              ref], capture_output=True, text=True, check=False)
        pid, _, user = res.stdout.strip().partition(" ")
        if res.returncode != 0 or not pid.isdigit() or pid == "0":
            raise ToolError(f"db container {ref} is not running "
                            f"({res.stderr.strip()[-300:] or 'no process'})")
        self.root = f"/proc/{pid}/root"
        if not os.path.isdir(self.root + cfg["spool_dir"]):
            raise ToolError(f"cannot reach {cfg['spool_dir']} of the db container through "
                            f"{self.root} (run the tool as root on the Docker host, or set "
                            "format: custom)")
        self.uid, self.gid = self._user_ids(user.strip())

    def _user_ids(self, user: str) -> tuple[int, int]:
        """uid/gid that programs run by docker exec get (the image's USER)."""
        if not user:
            return 0, 0
        name, _, group = user.partition(":")

        def lookup(table: str, key: str) -> list[str] | None:
            with contextlib.suppress(OSError), open(self.host(f"/etc/{table}")) as fh:
                for line in fh:
                    parts = line.rstrip("\n").split(":")
                    if parts[0] == key or (key.isdigit() and parts[2:3] == [key]):
                        return parts
            return None

        pw = lookup("passwd", name)
        uid = int(name) if name.isdigit() else (int(pw[2]) if pw else None)
        if group:
            gr = lookup("group", group)
            gid = int(group) if group.isdigit() else (int(gr[2]) if gr else None)
        else:
            gid = int(pw[3]) if pw else uid
        if uid is None or gid is None:
            ids = run_in_db(self.cfg, ["sh", "-c", "id -u; id -g"]).split()
            return int(ids[0]), int(ids[1])
        return uid, gid

    def host(self, inner: str) -> str:
        return self.root + inner

    def clean_stale(self) -> None:
        """Remove work directories left by killed runs: bmops-spool-<pid>-<random>,
        where <pid> (a process on this host) is gone.  A restore and its safety backup
        run side by side, so a live run's directory is never touched."""
        base = self.host(self.cfg["spool_dir"])
        for name in os.listdir(base):
            m = re.fullmatch(r"bmops-spool-(\d+)-[0-9a-f]+", name)
            if m and int(m[1]) != os.getpid() and not pid_alive(int(m[1])):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)

    def make_dir(self, inner: str) -> str:
        os.mkdir(self.host(inner), 0o700)
        os.chown(self.host(inner), self.uid, self.gid)
        return inner

    def spool(self) -> str:
        self.clean_stale()
        return self.make_dir(
            f"{self.cfg['spool_dir']}/bmops-spool-{os.getpid()}-{secrets.token_hex(6)}")

    def remove(self, inner: str) -> None:
        shutil.rmtree(self.host(inner), ignore_errors=True)

    def free_bytes(self, inner: str) -> int:
        st = os.statvfs(self.host(inner))
        return st.f_bavail * st.f_frsize
