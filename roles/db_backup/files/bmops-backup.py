#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bmops-backup: verified PostgreSQL backups and restores for the backup-mgmt stack.

One stdlib-only file, installed by the ``db_backup`` role as /usr/local/sbin/bmops-backup
and run by cron and by the backup/restore playbooks.  Settings come from a 0600 JSON
file (default /etc/bmops/backup.json, env BMOPS_BACKUP_CONFIG, option --config).

The dump runs inside the db container (client == server version) over the unix socket,
so no password is needed and none is ever on a command line.  Compression happens on
the host.  A backup exists only once it has been verified:

    <id>.<ext>.partial -> fsync -> verify (every member decompresses and passes its
    codec checksum, the TOC parses, every table file it names is there and ends with
    pg_dump's end-of-data marker; sha256) -> rename -> fsync dir -> manifest <id>.json
    written last (atomically).

Row counts in the manifest come from the dump's own data (the COPY rows of each table
file), so they describe exactly what is in the file, taken in pg_dump's single snapshot.

Exit codes: 0 ok, 1 failure, 2 usage/config error, 3 lock held by another run.
Every command prints one JSON document on stdout; human messages go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

TOOL_VERSION = "1.1.0"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3
DEFAULT_CONFIG = "/etc/bmops/backup.json"
CHUNK = 1024 * 1024
DAY = 86400
# A backup dated more than this in the future is "future-dated" (clock skew).
SKEW_TOLERANCE = 300

DEFAULTS = {
    "project_name": "backup-mgmt",
    "project_dir": "/opt/backup-mgmt",
    "service": "db",
    "docker": "docker",
    # Command prefix that runs a program inside the db container.  None: `docker exec -i`
    # on the container Compose labelled as the db service (else `docker compose exec -T`).
    # Tests point it at ``docker exec -i <container>``.
    "exec_prefix": None,
    # Name of the container's env var holding the DB password.  When set, programs in
    # the container get it as PGPASSWORD (expanded inside the container, never on argv),
    # for images whose local socket auth is not ``trust``.  "" disables.
    "container_password_env": "POSTGRES_PASSWORD",
    "db_name": "backup_mgmt",
    "db_user": "postgres",
    "backup_dir": "/backup/db",
    "lock_file": "/run/lock/bmops.lock",
    "format": "directory",  # directory | custom | sql_gz
    "codec": "auto",  # auto | zstd | gzip  (directory/custom; sql_gz is always gzip)
    "zstd_level": 1,
    "keep_days": 30,
    "keep_min": 3,
    "prune_legacy": False,
    "partial_max_age_seconds": DAY,
    "min_free_bytes": 1024**3,
    "size_ratio": 1.0,  # free space needed = pg_database_size * size_ratio + min_free_bytes
    "min_backup_bytes": 512,  # smaller files are rejected as not sane
    "restore_jobs": 2,
    "dump_jobs": 2,
    # The db container (name or id) for the directory format, which moves data through
    # the container's filesystem (/proc/<pid>/root) instead of docker exec's stdio.
    # None: derived from docker compose settings.
    "container": None,
    # Work directory inside the db container for directory dumps/restores (removed after).
    "spool_dir": "/tmp",
    "scratch_prefix": "bmops_scratch",
    "textfile_dir": "/var/lib/prometheus/node-exporter",
}

NAME_RE = re.compile(
    r"^(?P<stamp>\d{8}_\d{6})(?:_(?P<seq>\d+))?\.(?P<ext>sql\.gz|dump\.zst|dump\.gz|dir\.tar)"
    r"(?P<partial>\.partial)?$"
)
MANIFEST_RE = re.compile(r"^(?P<stamp>\d{8}_\d{6})(?:_(?P<seq>\d+))?\.json$")
EXT_INFO = {
    "sql.gz": {"format": "sql_gz", "codec": "gzip"},
    "dump.zst": {"format": "custom", "codec": "zstd"},
    "dump.gz": {"format": "custom", "codec": "gzip"},
    "dir.tar": {"format": "directory", "codec": "zstd"},  # members say their own codec
}
DECOMPRESS = {"zstd": ["zstd", "-dc", "-q"], "gzip": ["gzip", "-dc"]}
TEST = {"zstd": ["zstd", "-t", "-q"], "gzip": ["gzip", "-t"]}
SUFFIX = {"zstd": ".zst", "gzip": ".gz"}
CODEC_OF = {v: k for k, v in SUFFIX.items()}


class ToolError(Exception):
    """A failure with a sentence an admin understands; exit code attached."""

    def __init__(self, message: str, code: int = EXIT_FAIL):
        super().__init__(message)
        self.code = code


def log(msg: str) -> None:
    print(f"bmops-backup: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- names


def parse_name(name: str) -> dict | None:
    """Parse a backup file name; None when it is not one of ours."""
    m = NAME_RE.match(name)
    if not m:
        return None
    stamp = dt.datetime.strptime(m["stamp"], "%Y%m%d_%H%M%S").replace(tzinfo=dt.UTC)
    ext = m["ext"]
    return {
        "id": m["stamp"] + (f"_{m['seq']}" if m["seq"] else ""),
        "ext": ext,
        "partial": bool(m["partial"]),
        "name_time": stamp.timestamp(),
        **EXT_INFO[ext],
    }


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.UTC).timestamp()


# ----------------------------------------------------------------------- retention


def choose_retained(backups, now, keep_days, keep_min, prune_legacy=False,
                    partial_max_age=DAY):
    """Decide which backups to keep.  Pure function, no I/O.

    ``backups``: dicts with ``id``, ``kind`` (verified | legacy | unverified | partial)
    and ``time`` (epoch seconds, UTC).  Returns a list of decisions
    ``{"id", "kind", "action": "keep"|"delete", "reason", "future": bool}``, newest first.

    Rules: only verified backups count; the newest ``keep_min`` verified ones (not
    future-dated) are always kept; verified ones older than ``keep_days`` go; a
    future-dated backup (clock skew) is kept and flagged; legacy dumps are never
    counted and only deleted when ``prune_legacy`` and older than ``keep_days``;
    unverified and partial leftovers go once older than ``partial_max_age``.
    """
    horizon = now - keep_days * DAY
    ordered = sorted(backups, key=lambda b: (b["time"], b["id"]), reverse=True)
    decisions = []
    kept_recent = 0
    for b in ordered:
        future = b["time"] > now + SKEW_TOLERANCE
        kind = b["kind"]
        if future:
            action, reason = "keep", "future-dated (clock skew?): kept, not counted"
        elif kind == "verified":
            if kept_recent < keep_min:
                kept_recent += 1
                action, reason = "keep", f"among newest {keep_min} verified"
            elif b["time"] >= horizon:
                action, reason = "keep", f"within {keep_days} days"
            else:
                action, reason = "delete", f"verified, older than {keep_days} days"
        elif kind == "legacy":
            if prune_legacy and b["time"] < horizon:
                action, reason = "delete", f"legacy, older than {keep_days} days"
            else:
                action, reason = "keep", "legacy dump (never auto-deleted by default)"
        elif kind in ("unverified", "partial"):
            if b["time"] < now - partial_max_age:
                action, reason = "delete", f"{kind} leftover older than a day"
            else:
                action, reason = "keep", f"{kind}, recent (may be a run in progress)"
        else:
            action, reason = "keep", f"unknown kind {kind!r}"
        decisions.append({"id": b["id"], "kind": kind, "action": action,
                          "reason": reason, "future": future})
    return decisions


# ------------------------------------------------------------------------ config


def load_config(path: str) -> dict:
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ToolError(f"config file {path} not found (the db_backup role writes it)",
                        EXIT_USAGE) from None
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot read config {path}: {exc}", EXIT_USAGE) from None
    if st.st_mode & 0o077:
        raise ToolError(f"config {path} must not be readable by group/others (chmod 0600)",
                        EXIT_USAGE)
    if not isinstance(data, dict):
        raise ToolError(f"config {path} must hold a JSON object", EXIT_USAGE)
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise ToolError(f"config {path}: unknown keys {', '.join(unknown)}", EXIT_USAGE)
    cfg = {**DEFAULTS, **data}
    if cfg["format"] not in ("directory", "custom", "sql_gz"):
        raise ToolError("config: format must be 'directory', 'custom' or 'sql_gz'", EXIT_USAGE)
    if cfg["codec"] not in ("auto", "zstd", "gzip"):
        raise ToolError("config: codec must be auto, zstd or gzip", EXIT_USAGE)
    for key in ("keep_days", "keep_min", "restore_jobs", "dump_jobs"):
        if not isinstance(cfg[key], int) or cfg[key] < (1 if key.endswith("_jobs") else 0):
            raise ToolError(f"config: {key} must be a non-negative integer", EXIT_USAGE)
    if cfg["exec_prefix"] is not None and not (
            isinstance(cfg["exec_prefix"], list) and cfg["exec_prefix"]):
        raise ToolError("config: exec_prefix must be a non-empty list", EXIT_USAGE)
    var = cfg["container_password_env"]
    cfg["_wrapper"] = []
    if var:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise ToolError("config: container_password_env must be a variable name", EXIT_USAGE)
        cfg["_wrapper"] = [
            "sh", "-c", f'[ -n "${{{var}:-}}" ] && export PGPASSWORD="${var}"; exec "$@"', "sh"]
    cfg["_exec"] = None
    return cfg


def find_container(cfg: dict) -> str | None:
    """The running db container: the configured one, or the one Compose labelled."""
    if cfg["container"]:
        return cfg["container"]
    try:
        res = subprocess.run(
            [cfg["docker"], "ps", "-q", "--filter",
             f"label=com.docker.compose.project={cfg['project_name']}", "--filter",
             f"label=com.docker.compose.service={cfg['service']}"],
            capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    ids = res.stdout.split()
    if res.returncode == 0 and len(ids) == 1:
        cfg["container"] = ids[0]
        return ids[0]
    return None


def exec_prefix(cfg: dict) -> list:
    """Command prefix that runs a program in the db container (resolved once).

    Default: `docker exec -i <container>` for the container Compose labelled as the
    db service (the Compose CLI costs a few hundred ms per call); when it cannot be
    found, `docker compose ... exec -T <service>`, which says why.
    """
    if cfg["_exec"] is None:
        base = cfg["exec_prefix"]
        if base is None:
            cid = find_container(cfg)
            base = ([cfg["docker"], "exec", "-i", cid] if cid else
                    [cfg["docker"], "compose", "-p", cfg["project_name"],
                     "--project-directory", cfg["project_dir"], "exec", "-T", cfg["service"]])
        cfg["_exec"] = base + cfg["_wrapper"]
    return cfg["_exec"]


# -------------------------------------------------------------------------- lock


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


def pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError, TypeError):
        return False


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


# --------------------------------------------------------------------- processes


class Pipeline:
    """Start processes connected stdout->stdin; check every exit code (pipefail)."""

    def __init__(self):
        self.procs = []  # (label, Popen, stderr tempfile)

    def start(self, label, argv, stdin=None, stdout=subprocess.PIPE):
        err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in wait()
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=err)
        except FileNotFoundError:
            err.close()
            raise ToolError(f"{label}: command not found: {argv[0]}") from None
        self.procs.append((label, proc, err))
        return proc

    def kill(self):
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()

    def wait(self):
        """Wait for all; raise ToolError naming the first failed stage."""
        failures = []
        for label, proc, err in self.procs:
            rc = proc.wait()
            err.seek(0)
            text = err.read().decode(errors="replace").strip()
            err.close()
            if rc != 0:
                failures.append(f"{label} exited {rc}" + (f": {text[-600:]}" if text else ""))
        self.procs = []
        if failures:
            raise ToolError("; ".join(failures))


@contextlib.contextmanager
def feeding(path: str, label: str, argv: list, offset: int = 0, size: int | None = None,
            hasher=None, stdout=subprocess.PIPE):
    """Run ``argv`` with bytes [offset, offset+size) of ``path`` on its stdin (fed by a
    thread, hashed on the way); yield (pipeline, process, stats).  On leaving: join the
    feeder, wait for every process of the pipeline (pipefail), and raise ToolError on
    any failure; on an error inside the block, kill them all first."""
    pipe = Pipeline()
    errors: list = []
    stats = {"bytes": 0}
    if size is None:
        size = os.path.getsize(path)
    try:
        proc = pipe.start(label, argv, stdin=subprocess.PIPE, stdout=stdout)

        def feed():
            try:
                with open(path, "rb") as src:
                    _copy_range(src, offset, size, proc.stdin, hasher)
                    stats["bytes"] = size
            except BrokenPipeError:
                errors.append(f"{label} stopped reading early")
            except (OSError, ToolError) as exc:
                errors.append(str(exc))
            finally:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        yield pipe, proc, stats
        feeder.join()
        pipe.wait()
    except BaseException:
        pipe.kill()
        raise
    if errors:
        raise ToolError(f"reading {path}: {errors[0]}")


def run_in_db(cfg: dict, argv: list, stdin_text: str | None = None) -> str:
    """Run a program inside the db container; return stdout; raise on non-zero."""
    try:
        res = subprocess.run(exec_prefix(cfg) + argv, input=(stdin_text or "").encode(),
                             capture_output=True, check=False)
    except FileNotFoundError:
        raise ToolError(f"command not found: {exec_prefix(cfg)[0]}") from None
    if res.returncode != 0:
        raise ToolError(f"{argv[0]} in the db container exited {res.returncode}: "
                        f"{res.stderr.decode(errors='replace').strip()[-600:]}")
    return res.stdout.decode()


def psql(cfg: dict, sql: str, db: str | None = None) -> list[list[str]]:
    out = run_in_db(cfg, ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                          "-U", cfg["db_user"], "-d", db or cfg["db_name"], "-f", "-"], sql)
    return [line.split("\t") for line in out.splitlines() if line]


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


# ---------------------------------------------------------------- dump inspection


def count_copy_rows(stream) -> dict:
    """Read plain SQL dump text; return per-table COPY row counts and completeness."""
    counts: dict[str, int] = {}
    table = None
    complete = False
    nbytes = 0
    for line in stream:
        nbytes += len(line)
        if table is not None:
            if line == b"\\.\n":
                table = None
            else:
                counts[table] += 1
        elif line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
            head = line[5:].decode(errors="replace")
            table = head.split(" (", 1)[0].split(" FROM", 1)[0].strip()
            counts.setdefault(table, 0)
        elif line.startswith(b"-- PostgreSQL database dump complete"):
            complete = True
    return {"row_counts": counts, "complete": complete and table is None,
            "sql_bytes": nbytes}


def inspect_archive(cfg: dict, path: str, fmt: str, codec: str) -> dict:
    """Read a backup end to end: sha256, decompression, archive readable, row counts."""
    if fmt == "directory":
        return inspect_dir_tar(path, count=True)
    hasher = hashlib.sha256()
    with feeding(path, f"{codec} -d", DECOMPRESS[codec], hasher=hasher) as (pipe, dec, stats):
        if fmt == "custom":
            reader = pipe.start("pg_restore (read archive)",
                                [*exec_prefix(cfg), "pg_restore", "-f", "-"],
                                stdin=dec.stdout)
            dec.stdout.close()
            info = count_copy_rows(reader.stdout)
        else:
            info = count_copy_rows(dec.stdout)
    if not info["complete"]:
        raise ToolError(f"{path}: dump is incomplete (no end-of-dump marker)")
    info["sha256"] = hasher.hexdigest()
    info["size_bytes"] = stats["bytes"]
    return info


# ------------------------------------------------------------ directory archives
#
# Default format.  pg_dump -Fd -Z0 -j N writes one plain COPY file per table into a
# work directory inside the db container; the host reads it through /proc/<pid>/root
# (no docker exec stdio in the data path), counts each table's rows, and packs the
# files into ONE tar file whose members are compressed one by one:
#
#     <id>.dir.tar = toc.dat + <dumpId>.dat.zst ... (uncompressed tar, 0600)
#
# Restoring by hand: `tar -xf <id>.dir.tar -C d && zstd -d --rm d/*.zst &&
# pg_restore -j 2 -d DB d` (pg_restore 16+ reads the .zst members as they are).
# bmops restores without unpacking: every table file becomes a FIFO in the container
# that the host fills from its member while `pg_restore -j N` reads it.


def _read_int(buf: bytes, pos: int, int_size: int) -> tuple[int, int]:
    sign = buf[pos]
    val = int.from_bytes(buf[pos + 1:pos + 1 + int_size], "little")
    return (-val if sign else val), pos + 1 + int_size


def _read_str(buf: bytes, pos: int, int_size: int) -> tuple[str | None, int]:
    n, pos = _read_int(buf, pos, int_size)
    if n < 0:
        return None, pos
    if pos + n > len(buf):
        raise ValueError("string runs past the end")
    return buf[pos:pos + n].decode("utf-8", errors="replace"), pos + n


def copy_table_name(copy_stmt: str | None) -> str | None:
    """'COPY public.t (a, b) FROM stdin;' -> 'public.t' (the manifest's table key)."""
    if not copy_stmt or not copy_stmt.startswith("COPY "):
        return None
    return copy_stmt[5:].split(" (", 1)[0].split(" FROM", 1)[0].strip()


def parse_toc(data: bytes) -> dict:
    """Parse a directory-format toc.dat: header and TOC entries that carry data files.

    Returns {"version": "1.14.0", "entries": [{"dump_id", "desc", "table", "file"}]};
    raises ValueError when the file is not a readable pg_dump TOC.
    """
    if data[:5] != b"PGDMP":
        raise ValueError("toc.dat does not start with PGDMP")
    vmaj, vmin, vrev, int_size, _off_size, fmt = data[5:11]
    version = (vmaj, vmin, vrev)
    if version < (1, 12, 0) or vmaj != 1:
        raise ValueError(f"unsupported archive version {vmaj}.{vmin}.{vrev}")
    if fmt == 1:  # archCustom: data blocks follow the TOC, no file names
        raise ValueError("this is a custom-format archive, not a directory TOC")
    pos = 11
    if version >= (1, 15, 0):
        compression, pos = data[pos], pos + 1  # algorithm byte
    else:
        compression, pos = _read_int(data, pos, int_size)
    if compression != 0:
        raise ValueError("the archive is compressed by pg_dump; bmops dumps with -Z0")
    for _ in range(7):  # creation time
        _, pos = _read_int(data, pos, int_size)
    for _ in range(3):  # database, server version, pg_dump version
        _, pos = _read_str(data, pos, int_size)
    count, pos = _read_int(data, pos, int_size)
    entries = []
    for _ in range(count):
        dump_id, pos = _read_int(data, pos, int_size)
        had_dumper, pos = _read_int(data, pos, int_size)
        for _ in range(2):  # tableoid, oid
            _, pos = _read_str(data, pos, int_size)
        _tag, pos = _read_str(data, pos, int_size)
        desc, pos = _read_str(data, pos, int_size)
        _, pos = _read_int(data, pos, int_size)  # section
        for _ in range(2):  # defn, dropStmt
            _, pos = _read_str(data, pos, int_size)
        copy_stmt, pos = _read_str(data, pos, int_size)
        for _ in range(3 if version >= (1, 14, 0) else 2):  # namespace, tablespace, tableam
            _, pos = _read_str(data, pos, int_size)
        if version >= (1, 16, 0):
            _, pos = _read_int(data, pos, int_size)  # relkind
        for _ in range(2):  # owner, "false"
            _, pos = _read_str(data, pos, int_size)
        while True:  # dependencies, NULL-terminated
            dep, pos = _read_str(data, pos, int_size)
            if dep is None:
                break
        filename, pos = _read_str(data, pos, int_size)
        if pos > len(data):
            raise ValueError("TOC runs past the end of toc.dat")
        if had_dumper and filename:
            entries.append({"dump_id": dump_id, "desc": desc, "file": filename,
                            "table": copy_table_name(copy_stmt)})
    return {"version": f"{vmaj}.{vmin}.{vrev}", "entries": entries}


def read_toc(data: bytes, where: str) -> dict:
    """parse_toc for callers: an unreadable TOC is a ToolError naming the file."""
    try:
        return parse_toc(data)
    except (ValueError, IndexError) as exc:
        raise ToolError(f"toc.dat of {where} is unreadable: {exc}") from None


COPY_END = b"\\.\n\n\n"  # what pg_dump writes after a table's last row (-Fd, -Z0)


def compress_argv(codec: str, level: int) -> list:
    """The host compressor (stdout), for a file argument or stdin."""
    return (["zstd", f"-{level}", "-T0", "-q", "-c"] if codec == "zstd"
            else ["gzip", "-1", "-c"])


def table_rows(name: str, newlines: int, tail: bytes) -> int:
    """Rows of a -Fd table file: one line per COPY row, then pg_dump's end marker."""
    if not tail.endswith(COPY_END):
        raise ToolError(f"{name}: table data is incomplete (no end-of-data marker)")
    return newlines - COPY_END.count(b"\n")


def _tar_header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(mtime)
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % 512)


def _compress_member(src: str, out, codec: str, level: int, count: bool) -> dict:
    """Compress the finished file ``src`` into ``out``; count its rows meanwhile.

    The compressor and ``wc -l`` read the file themselves (page cache, C speed);
    Python only copies the compressed bytes.
    """
    argv = [*compress_argv(codec, level), src]
    pipe = Pipeline()
    written = 0
    lines = b"0"
    try:
        comp = pipe.start(argv[0], argv, stdin=subprocess.DEVNULL)
        counter = None
        if count:
            with open(src, "rb") as fh:
                counter = pipe.start("wc -l", ["wc", "-l"], stdin=fh)
        while chunk := comp.stdout.read(CHUNK):
            out.write(chunk)
            written += len(chunk)
        if counter:
            lines = counter.stdout.read()
        pipe.wait()
    except BaseException:
        pipe.kill()
        raise
    size = os.path.getsize(src)
    result = {"compressed": written, "bytes": size}
    if count:
        with open(src, "rb") as fh:
            fh.seek(max(0, size - len(COPY_END)))
            tail = fh.read()
        result["rows"] = table_rows(os.path.basename(src), int(lines.split()[0]), tail)
    return result


def pack_directory(src_dir: str, out, codec: str, level: int) -> dict:
    """Pack a pg_dump -Fd directory into the open file ``out`` as a tar of compressed
    members; return row counts per table, read from the table files themselves."""
    with open(os.path.join(src_dir, "toc.dat"), "rb") as fh:
        toc_bytes = fh.read()
    toc = read_toc(toc_bytes, "the dump")
    names = set(os.listdir(src_dir))
    missing = [e["file"] for e in toc["entries"] if e["file"] not in names]
    if missing:
        raise ToolError(f"dump is incomplete: data files missing: {', '.join(missing[:5])}")
    tables = {e["file"]: e["table"] for e in toc["entries"] if e["table"]}
    now = time.time()
    out.write(_tar_header("toc.dat", len(toc_bytes), now) + toc_bytes + _pad(len(toc_bytes)))
    counts: dict[str, int] = {}
    sql_bytes = 0
    for name in sorted(names - {"toc.dat"}):
        path = os.path.join(src_dir, name)
        if not os.path.isfile(path):
            raise ToolError(f"unexpected entry {name} in the dump directory")
        start = out.tell()
        out.write(b"\0" * 512)  # header, filled in once the compressed size is known
        res = _compress_member(path, out, codec, level, count=name in tables)
        out.write(_pad(res["compressed"]))
        end = out.tell()
        out.seek(start)
        out.write(_tar_header(name + SUFFIX[codec], res["compressed"], now))
        out.seek(end)
        sql_bytes += res["bytes"]
        if name in tables:
            counts[tables[name]] = counts.get(tables[name], 0) + res["rows"]
    out.write(b"\0" * 1024)  # end of archive
    return {"row_counts": counts, "sql_bytes": sql_bytes + len(toc_bytes),
            "archive_version": toc["version"], "members": len(names)}


def iter_tar(fh):
    """Yield (name, offset, size) of each member of an uncompressed tar; hashes nothing."""
    while True:
        block = fh.read(512)
        if len(block) < 512:
            raise ToolError("archive is truncated (no end-of-archive marker)")
        if block == b"\0" * 512:
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except tarfile.TarError as exc:
            raise ToolError(f"archive is damaged: {exc}") from None
        if not info.isfile() or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", info.name):
            raise ToolError(f"archive holds an unexpected member {info.name!r}")
        yield info.name, fh.tell(), info.size
        fh.seek(info.size + (-info.size % 512), os.SEEK_CUR)


def _member_codec(name: str) -> tuple[str, str | None]:
    """'3365.dat.zst' -> ('3365.dat', 'zstd'); 'toc.dat' -> ('toc.dat', None)."""
    base, dot, suffix = name.rpartition(".")
    if dot and "." + suffix in CODEC_OF:
        return base, CODEC_OF["." + suffix]
    return name, None


def _copy_range(fh, offset: int, size: int, dest, hasher=None) -> None:
    fh.seek(offset)
    left = size
    while left > 0:
        chunk = fh.read(min(CHUNK, left))
        if not chunk:
            raise ToolError("archive is truncated")
        if hasher is not None:
            hasher.update(chunk)
        dest.write(chunk)
        left -= len(chunk)


def inspect_dir_tar(path: str, count: bool = True) -> dict:
    """Read a .dir.tar end to end: sha256 of the file, every member decompresses
    (codec checksums), the TOC parses, and (count=True) rows per table."""
    hasher = hashlib.sha256()
    counts: dict[str, int] = {}
    sql_bytes = 0
    with open(path, "rb") as fh:
        members = list(iter_tar(fh))
        names = {_member_codec(n)[0] for n, _, _ in members}
        if "toc.dat" not in names:
            raise ToolError(f"{path}: no toc.dat in the archive")
        for name, off, size in members:
            if name == "toc.dat":
                fh.seek(off)
                toc = read_toc(fh.read(size), path)
        tables = {e["file"]: e["table"] for e in toc["entries"] if e["table"]}
        missing = [e["file"] for e in toc["entries"] if e["file"] not in names]
        if missing:
            raise ToolError(f"{path}: data files missing: {', '.join(missing[:5])}")
        for name, off, size in members:
            base, codec = _member_codec(name)
            if codec is None:
                continue
            table = tables.get(base) if count else None
            if table:
                seen = {"nl": 0, "tail": b"", "bytes": 0}

                def sink(chunk, seen=seen):
                    seen["nl"] += chunk.count(b"\n")
                    seen["tail"] = (seen["tail"] + chunk[-8:])[-8:]
                    seen["bytes"] += len(chunk)

                _pipe_range(path, off, size, f"{codec} -d ({name})", DECOMPRESS[codec],
                            sink=sink)
                nl, tail = seen["nl"], seen["tail"]
                sql_bytes += seen["bytes"]
            else:
                _pipe_range(path, off, size, f"{codec} -t ({name})", TEST[codec])
            if table:
                counts[table] = counts.get(table, 0) + table_rows(f"{path}: {name}", nl, tail)
        fh.seek(0)
        size_bytes = 0
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
            size_bytes += len(chunk)
    return {"sha256": hasher.hexdigest(), "size_bytes": size_bytes,
            "row_counts": counts if count else None, "sql_bytes": sql_bytes,
            "complete": True}


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


def dump_directory(cfg: dict, out, codec: str, db_size: int) -> dict:
    """pg_dump -Fd inside the container, then pack; the work directory is always removed."""
    fs = ContainerFS(cfg)
    spool = fs.spool()
    try:
        free = fs.free_bytes(spool)
        if free < db_size:
            raise ToolError(f"not enough free space for the dump's work directory in the db "
                            f"container ({cfg['spool_dir']}): {free} bytes free, need about "
                            f"{db_size} (the database size); set spool_dir to a larger place")
        target = f"{spool}/dump"
        run_in_db(cfg, ["pg_dump", "-U", cfg["db_user"], "-Fd", "-Z0", "-j",
                        str(cfg["dump_jobs"]), "--no-sync", "-f", target, cfg["db_name"]])
        dumped = time.time()
        info = pack_directory(fs.host(target), out, codec, int(cfg["zstd_level"]))
        # the server's own pg_restore reads the TOC as a restore will
        run_in_db(cfg, ["pg_restore", "-l", target])
        info["dumped_at"] = dumped
        return info
    finally:
        fs.remove(spool)


def restore_directory(cfg: dict, entry: dict, target: str) -> None:
    """pg_restore -j N from FIFOs the host fills from the archive's members."""
    fs = ContainerFS(cfg)
    spool = fs.spool()
    stop = threading.Event()
    errors: list = []
    pending: dict = {}
    workers: list = []
    try:
        work = fs.make_dir(f"{spool}/dump")
        with open(entry["path"], "rb") as fh:
            members = list(iter_tar(fh))
            for name, off, size in members:
                base, codec = _member_codec(name)
                dest = fs.host(f"{work}/{base}")
                if codec is None or not re.fullmatch(r"\d+\.dat", base):
                    # toc.dat, large-object files: plain files, written up front
                    with open(dest, "wb") as out:
                        os.fchmod(out.fileno(), 0o600)
                        if codec is None:
                            _copy_range(fh, off, size, out)
                        else:
                            _decompress_range(entry["path"], off, size, codec, out.fileno())
                    os.chown(dest, fs.uid, fs.gid)
                else:
                    os.mkfifo(dest, 0o600)
                    os.chown(dest, fs.uid, fs.gid)
                    pending[dest] = (off, size, codec, name)

        def fill(fd, off, size, codec, name):
            try:
                os.set_blocking(fd, True)
                _decompress_range(entry["path"], off, size, codec, fd)
            except (OSError, ToolError) as exc:
                errors.append(f"{name}: {exc}")
            finally:
                os.close(fd)  # the reader sees end of file

        def dispatcher():
            # start a filler as soon as pg_restore opens a FIFO for reading
            while pending and not stop.is_set():
                for dest in list(pending):
                    try:
                        fd = os.open(dest, os.O_WRONLY | os.O_NONBLOCK)
                    except OSError as exc:
                        if exc.errno != errno.ENXIO:
                            errors.append(f"{dest}: {exc}")
                            pending.pop(dest)
                        continue
                    args = pending.pop(dest)
                    t = threading.Thread(target=fill, args=(fd, *args), daemon=True)
                    t.start()
                    workers.append(t)
                stop.wait(0.02)

        disp = threading.Thread(target=dispatcher, daemon=True)
        disp.start()
        try:
            run_in_db(cfg, ["pg_restore", "--exit-on-error", "-j", str(cfg["restore_jobs"]),
                            "-U", cfg["db_user"], "-d", target, work])
        finally:
            stop.set()
            disp.join()
            pending.clear()  # never opened: no filler is started for them
            for t in workers:
                t.join(timeout=60)
        if errors:
            raise ToolError(f"feeding pg_restore failed: {errors[0]}")
    finally:
        fs.remove(spool)


def _pipe_range(path: str, offset: int, size: int, label: str, argv: list,
                sink=None, out_fd: int | None = None) -> None:
    """Feed bytes [offset, offset+size) of ``path`` to ``argv``; its output goes to
    ``sink(chunk)``, to ``out_fd``, or nowhere.  Every failure raises ToolError."""
    if sink is not None:
        stdout = subprocess.PIPE
    else:
        stdout = out_fd if out_fd is not None else subprocess.DEVNULL
    with feeding(path, label, argv, offset, size, stdout=stdout) as (_, proc, _):
        if sink is not None:
            while chunk := proc.stdout.read(CHUNK):
                sink(chunk)


def _decompress_range(path: str, offset: int, size: int, codec: str, out_fd: int) -> None:
    _pipe_range(path, offset, size, f"{codec} -d", DECOMPRESS[codec], out_fd=out_fd)

# -------------------------------------------------------------------- inventory


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


def read_manifest(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def scan(backup_dir: str) -> list[dict]:
    """Classify every file in the backup dir: verified, legacy, unverified, partial."""
    try:
        names = os.listdir(backup_dir)
    except FileNotFoundError:
        raise ToolError(f"backup dir {backup_dir} does not exist (the role creates it)",
                        EXIT_USAGE) from None
    entries = []
    manifests = {}
    for name in names:
        m = MANIFEST_RE.match(name)
        if m:
            manifests[name[:-5]] = os.path.join(backup_dir, name)
    seen = set()
    for name in sorted(names):
        info = parse_name(name)
        if not info:
            continue
        path = os.path.join(backup_dir, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        entry = {"id": info["id"], "file": name, "path": path, "format": info["format"],
                 "codec": info["codec"], "size_bytes": st.st_size, "mtime": st.st_mtime,
                 "time": info["name_time"], "flags": []}
        if info["partial"]:
            entry.update(kind="partial", time=st.st_mtime)
            entries.append(entry)
            continue
        seen.add(info["id"])
        man = read_manifest(manifests[info["id"]]) if info["id"] in manifests else None
        if man is None:
            if info["ext"] == "sql.gz":
                # The manual's own file: restorable, never counted, age from mtime.
                entry.update(kind="legacy", time=st.st_mtime)
            else:
                entry.update(kind="unverified", time=st.st_mtime)
                entry["flags"].append("no manifest")
        elif (man.get("verified") is True and man.get("file") == name
              and man.get("size_bytes") == st.st_size and man.get("sha256")):
            entry.update(kind="verified", manifest=man, sha256=man["sha256"],
                         tag=man.get("tag"))
            try:
                entry["time"] = parse_iso(man["created_utc"])
            except (KeyError, ValueError):
                entry["flags"].append("manifest time unreadable; name time used")
        else:
            entry.update(kind="unverified", time=st.st_mtime)
            entry["flags"].append(f"manifest does not match the file (size {st.st_size}, "
                                  f"manifest says {man.get('size_bytes')})")
        entries.append(entry)
    for bid, mpath in manifests.items():
        if bid not in seen:  # manifest whose data file is gone
            st = os.stat(mpath)
            entries.append({"id": bid, "file": os.path.basename(mpath), "path": mpath,
                            "kind": "unverified", "time": st.st_mtime, "mtime": st.st_mtime,
                            "size_bytes": 0, "flags": ["manifest without data file"],
                            "orphan_manifest": True})
    entries.sort(key=lambda e: (e["time"], e["id"]), reverse=True)
    return entries


def public(entry: dict, now: float) -> dict:
    out = {k: v for k, v in entry.items() if k not in ("manifest", "mtime")}
    out["created_utc"] = iso(entry["time"])
    out["age_seconds"] = int(now - entry["time"])
    out["age_days"] = round((now - entry["time"]) / DAY, 2)
    if entry["time"] > now + SKEW_TOLERANCE:
        out["flags"] = entry["flags"] + ["future-dated"]
    return out


def find_backup(cfg: dict, ref: str | None, usable_only: bool = True) -> dict:
    """A backup by id, file name or path (legacy allowed); default: newest verified."""
    entries = scan(cfg["backup_dir"])
    if ref:
        if os.sep in ref:
            ref = os.path.basename(ref)
        for e in entries:
            if ref in (e["id"], e["file"]) and not e.get("orphan_manifest"):
                if usable_only and e["kind"] in ("partial", "unverified"):
                    raise ToolError(f"{ref} is {e['kind']} ({', '.join(e['flags']) or 'partial'})"
                                    ": not restorable")
                return e
        raise ToolError(f"backup {ref} not found in {cfg['backup_dir']}")
    for e in entries:
        if e["kind"] == "verified" and e["time"] <= time.time() + SKEW_TOLERANCE:
            return e
    raise ToolError(f"no verified backup in {cfg['backup_dir']}")


# ------------------------------------------------------------------------ backup


def pick_codec(cfg: dict) -> str:
    if cfg["format"] == "sql_gz":
        return "gzip"
    if cfg["codec"] == "auto":
        return "zstd" if shutil.which("zstd") else "gzip"
    return cfg["codec"]


def new_id(backup_dir: str, now: float) -> str:
    base = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%d_%H%M%S")
    taken = {parse_name(n)["id"] for n in os.listdir(backup_dir) if parse_name(n)}
    taken |= {n[:-5] for n in os.listdir(backup_dir) if MANIFEST_RE.match(n)}
    bid, seq = base, 0
    while bid in taken:
        seq += 1
        bid = f"{base}_{seq}"
    return bid


def check_free_space(cfg: dict, db_size: int) -> dict:
    st = os.statvfs(cfg["backup_dir"])
    free = st.f_bavail * st.f_frsize
    need = int(db_size * float(cfg["size_ratio"])) + int(cfg["min_free_bytes"])
    if free < need:
        raise ToolError(f"not enough free space in {cfg['backup_dir']}: {free} bytes free, "
                        f"need {need} (database {db_size} x ratio {cfg['size_ratio']} + "
                        f"minimum {cfg['min_free_bytes']})")
    return {"free_bytes": free, "needed_bytes": need}


def do_backup(cfg: dict, tag: str | None = None) -> dict:
    started = time.time()
    bdir = cfg["backup_dir"]
    if not os.path.isdir(bdir):
        raise ToolError(f"backup dir {bdir} does not exist (the role creates it)", EXIT_USAGE)
    fmt = cfg["format"]
    codec = pick_codec(cfg)
    if not shutil.which(DECOMPRESS[codec][0]):
        raise ToolError(f"{codec} is not installed on the host")
    rows = psql(cfg, "SELECT current_setting('server_version'), "
                     "pg_database_size(current_database());")
    server_version, db_size = rows[0][0], int(rows[0][1])
    space = check_free_space(cfg, db_size)
    bid = new_id(bdir, started)
    if fmt == "directory":
        ext = "dir.tar"
    else:
        ext = "sql.gz" if fmt == "sql_gz" else ("dump.zst" if codec == "zstd" else "dump.gz")
    final = os.path.join(bdir, f"{bid}.{ext}")
    partial = final + ".partial"
    jobs = f", {cfg['dump_jobs']} jobs" if fmt == "directory" else ""
    log(f"backup {bid}: dumping {cfg['db_name']} ({db_size} bytes) as {fmt}/{codec}{jobs}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            if fmt == "directory":
                info = dump_directory(cfg, out, codec, db_size)
            else:
                dump_stream(cfg, fmt, codec, out)
            out.flush()
            os.fsync(out.fileno())
        written = time.time()
        size = os.path.getsize(partial)
        if size < int(cfg["min_backup_bytes"]):
            raise ToolError(f"dump is only {size} bytes: not a sane backup")
        log(f"backup {bid}: verifying {size} bytes")
        if fmt == "directory":
            check = inspect_dir_tar(partial, count=False)
        else:
            check = info = inspect_archive(cfg, partial, fmt, codec)
        if check["size_bytes"] != size:
            raise ToolError("file changed while it was verified")
        os.rename(partial, final)
        fsync_dir(bdir)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
            log(f"backup {bid}: removed {partial}")
        raise
    finished = time.time()
    if fmt == "directory":
        phases = {"dump_seconds": round(info["dumped_at"] - started, 3),
                  "pack_seconds": round(written - info["dumped_at"], 3)}
        source, extra = "dump table files", {"archive_version": info["archive_version"]}
    else:
        phases = {"dump_seconds": round(written - started, 3)}
        source, extra = "dump COPY data", {}
    manifest = {
        "id": bid, "file": os.path.basename(final), "tag": tag, "verified": True,
        "created_utc": iso(started), "finished_utc": iso(finished),
        "database": cfg["db_name"], "server_version": server_version,
        "format": fmt, "codec": codec, "size_bytes": size, "sha256": check["sha256"],
        "db_size_bytes": db_size, "sql_bytes": info["sql_bytes"], **extra,
        "duration_seconds": round(finished - started, 3), **phases,
        "verify_seconds": round(finished - written, 3),
        "row_counts": info["row_counts"], "row_counts_source": source,
        "host": socket.gethostname(), "tool_version": TOOL_VERSION,
    }
    return _publish(cfg, manifest, final, space)


def dump_stream(cfg: dict, fmt: str, codec: str, out) -> None:
    """custom and sql_gz: pg_dump's stdout through docker exec, compressed on the host."""
    if fmt == "sql_gz":  # exactly the manual's: pg_dump -U postgres backup_mgmt | gzip
        dump_argv = ["pg_dump", "-U", cfg["db_user"], cfg["db_name"]]
        comp_argv = ["gzip"]
    else:
        dump_argv = ["pg_dump", "-U", cfg["db_user"], "-Fc", "-Z0", cfg["db_name"]]
        comp_argv = compress_argv(codec, int(cfg["zstd_level"]))
    pipe = Pipeline()
    try:
        dump = pipe.start("pg_dump", exec_prefix(cfg) + dump_argv, stdin=subprocess.DEVNULL)
        pipe.start(comp_argv[0], comp_argv, stdin=dump.stdout, stdout=out)
        dump.stdout.close()
        pipe.wait()
    except BaseException:
        pipe.kill()
        raise


def _publish(cfg: dict, manifest: dict, final: str, space: dict) -> dict:
    """Write the manifest last; the backup counts from this moment."""
    bid = manifest["id"]
    write_atomic(os.path.join(cfg["backup_dir"], f"{bid}.json"),
                 json.dumps(manifest, indent=2) + "\n")
    log(f"backup {bid}: verified, sha256 {manifest['sha256']}")
    counts = manifest["row_counts"]
    return {"ok": True, "id": bid, "path": final, **{k: manifest[k] for k in (
        "tag", "sha256", "size_bytes", "duration_seconds", "format", "codec",
        "server_version", "created_utc")}, "tables": len(counts),
        "rows": sum(counts.values()), "space": space}


def do_prune(cfg: dict, now: float, dry_run: bool = False) -> dict:
    entries = scan(cfg["backup_dir"])
    decisions = choose_retained(entries, now, cfg["keep_days"], cfg["keep_min"],
                                cfg["prune_legacy"], cfg["partial_max_age_seconds"])
    by_id = {}
    for e in entries:
        by_id.setdefault(e["id"], []).append(e)
    deleted = []
    for d in decisions:
        if d["action"] != "delete":
            continue
        deleted.append(d["id"])
        if dry_run:
            continue
        for e in by_id[d["id"]]:
            if e["kind"] != d["kind"]:
                continue
            # Data file first, manifest last: a crash leaves an orphan manifest,
            # which the next run removes, never a "verified" file without data.
            if os.path.exists(e["path"]):
                os.unlink(e["path"])
            man = os.path.join(cfg["backup_dir"], f"{e['id']}.json")
            if e["kind"] in ("verified", "unverified") and os.path.exists(man):
                os.unlink(man)
        log(f"prune: deleted {d['id']} ({d['reason']})")
    if deleted and not dry_run:
        fsync_dir(cfg["backup_dir"])
    return {"deleted": deleted, "dry_run": dry_run, "decisions": decisions,
            "future_dated": [d["id"] for d in decisions if d["future"]]}


def write_textfile(cfg: dict, now: float, run_ok: bool) -> str | None:
    tdir = cfg.get("textfile_dir")
    if not tdir or not os.path.isdir(tdir):
        return None
    entries = scan(cfg["backup_dir"])
    verified = [e for e in entries if e["kind"] == "verified"]
    last = verified[0]["manifest"] if verified else {}
    lines = [
        "# HELP bmops_backup_last_success_timestamp_seconds End of the newest verified backup.",
        "# TYPE bmops_backup_last_success_timestamp_seconds gauge",
        f"bmops_backup_last_success_timestamp_seconds "
        f"{parse_iso(last['finished_utc']) if last else 0:.0f}",
        "# HELP bmops_backup_last_size_bytes Size of the newest verified backup.",
        "# TYPE bmops_backup_last_size_bytes gauge",
        f"bmops_backup_last_size_bytes {last.get('size_bytes', 0)}",
        "# HELP bmops_backup_last_duration_seconds Duration of the newest verified backup.",
        "# TYPE bmops_backup_last_duration_seconds gauge",
        f"bmops_backup_last_duration_seconds {last.get('duration_seconds', 0)}",
        "# HELP bmops_backup_verified_count Verified backups on disk.",
        "# TYPE bmops_backup_verified_count gauge",
        f"bmops_backup_verified_count {len(verified)}",
        "# HELP bmops_backup_last_run_success 1 if the last backup run succeeded.",
        "# TYPE bmops_backup_last_run_success gauge",
        f"bmops_backup_last_run_success {1 if run_ok else 0}",
        "# HELP bmops_backup_last_run_timestamp_seconds Time of the last backup run.",
        "# TYPE bmops_backup_last_run_timestamp_seconds gauge",
        f"bmops_backup_last_run_timestamp_seconds {now:.0f}",
    ]
    path = os.path.join(tdir, "bmops_backup.prom")
    write_atomic(path, "\n".join(lines) + "\n", 0o644)
    return path


# ----------------------------------------------------------------------- restore


def scratch_name(cfg: dict, purpose: str) -> str:
    return f"{cfg['scratch_prefix']}_{purpose}"


def check_scratch_name(cfg: dict, name: str) -> None:
    if not re.fullmatch(r"[a-z0-9_]{1,63}", name) or not name.startswith(
            cfg["scratch_prefix"] + "_"):
        raise ToolError(f"refusing to touch database {name!r}: scratch databases must be "
                        f"named {cfg['scratch_prefix']}_*", EXIT_USAGE)


def verify_entry(cfg: dict, entry: dict) -> dict:
    """Full check: checksum against the manifest, then read the archive end to end."""
    if entry["kind"] not in ("verified", "legacy"):
        raise ToolError(f"{entry['file']} is {entry['kind']}: {', '.join(entry['flags'])}")
    info = inspect_archive(cfg, entry["path"], entry["format"], entry["codec"])
    result = {"id": entry["id"], "file": entry["file"], "kind": entry["kind"],
              "sha256": info["sha256"], "size_bytes": info["size_bytes"],
              "row_counts": info["row_counts"]}
    if entry["kind"] == "verified":
        man = entry["manifest"]
        if info["sha256"] != man["sha256"]:
            raise ToolError(f"{entry['file']}: sha256 {info['sha256']} does not match the "
                            f"manifest ({man['sha256']}): the file is corrupt")
        if info["row_counts"] != man.get("row_counts", info["row_counts"]):
            raise ToolError(f"{entry['file']}: row counts differ from the manifest")
    return result


def sha256_only(entry: dict) -> None:
    h = hashlib.sha256()
    with open(entry["path"], "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    if entry["kind"] == "verified" and h.hexdigest() != entry["manifest"]["sha256"]:
        raise ToolError(f"{entry['file']}: sha256 does not match the manifest: corrupt file")


def restore_into(cfg: dict, entry: dict, target: str) -> dict:
    """Create ``target`` afresh and load the backup into it; errors are fatal."""
    check_scratch_name(cfg, target)
    started = time.time()
    sha256_only(entry)  # before anything is touched
    psql(cfg, f"DROP DATABASE IF EXISTS {sql_ident(target)} WITH (FORCE);", db="postgres")
    psql(cfg, f"CREATE DATABASE {sql_ident(target)};", db="postgres")
    if entry["format"] == "directory":
        restore_directory(cfg, entry, target)
    else:
        restore_stream(cfg, entry, target)
    counts = compare_counts(cfg, entry, target)
    return {"ok": counts["match"], "id": entry["id"], "file": entry["file"],
            "database": target, "duration_seconds": round(time.time() - started, 3),
            **counts}


def restore_stream(cfg: dict, entry: dict, target: str) -> None:
    """custom and sql_gz archives: decompress on the host, stream through docker exec."""
    user = cfg["db_user"]
    codec = entry["codec"]
    with feeding(entry["path"], f"{codec} -d", DECOMPRESS[codec]) as (pipe, dec, _):
        if entry["format"] == "sql_gz":
            argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                    "-U", user, "-d", target, "-o", "/dev/null"]
            label = "psql (restore)"
        elif cfg["restore_jobs"] > 1:
            # pg_restore -j needs a seekable file: stage it inside the container.
            argv = ["sh", "-c", 'umask 077 && cat > "$1"', "sh", f"/tmp/{target}.dump"]
            label = "stage archive"
        else:
            argv = ["pg_restore", "--exit-on-error", "-U", user, "-d", target]
            label = "pg_restore"
        pipe.start(label, exec_prefix(cfg) + argv, stdin=dec.stdout,
                   stdout=subprocess.DEVNULL)
        dec.stdout.close()
    if entry["format"] == "custom" and cfg["restore_jobs"] > 1:
        tmp = f"/tmp/{target}.dump"
        try:
            run_in_db(cfg, ["pg_restore", "--exit-on-error", "-j", str(cfg["restore_jobs"]),
                            "-U", user, "-d", target, tmp])
        finally:
            run_in_db(cfg, ["rm", "-f", tmp])


def compare_counts(cfg: dict, entry: dict, target: str) -> dict:
    if entry["kind"] == "verified" and "row_counts" in entry["manifest"]:
        expected = entry["manifest"]["row_counts"]
    else:  # legacy dump: counts from the file itself
        expected = inspect_archive(cfg, entry["path"], entry["format"],
                                   entry["codec"])["row_counts"]
    actual = {}
    if expected:
        union = " UNION ALL ".join(
            f"SELECT {sql_literal(t)}, count(*) FROM {t}" for t in sorted(expected))
        actual = {r[0]: int(r[1]) for r in psql(cfg, union + ";", db=target)}
    diff = {t: {"expected": n, "actual": actual.get(t)} for t, n in expected.items()
            if actual.get(t) != n}
    return {"match": not diff, "tables": len(expected), "rows": sum(expected.values()),
            "mismatches": diff}


def drop_db(cfg: dict, name: str) -> None:
    check_scratch_name(cfg, name)
    psql(cfg, f"DROP DATABASE IF EXISTS {sql_ident(name)} WITH (FORCE);", db="postgres")


def do_swap(cfg: dict, scratch: str, keep_old: int) -> dict:
    """Rename live -> <prefix>_old_<ts>, scratch -> live, in one transaction."""
    check_scratch_name(cfg, scratch)
    live = cfg["db_name"]
    old = scratch_name(cfg, "old_" + dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S"))
    exists = psql(cfg, f"SELECT count(*) FROM pg_database WHERE datname = "
                       f"{sql_literal(scratch)};", db="postgres")
    if exists[0][0] != "1":
        raise ToolError(f"scratch database {scratch} does not exist: nothing to swap in")
    sql = f"""
ALTER DATABASE {sql_ident(live)} ALLOW_CONNECTIONS false;
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE datname IN ({sql_literal(live)}, {sql_literal(scratch)}) AND pid <> pg_backend_pid();
BEGIN;
ALTER DATABASE {sql_ident(live)} RENAME TO {sql_ident(old)};
ALTER DATABASE {sql_ident(scratch)} RENAME TO {sql_ident(live)};
COMMIT;
ALTER DATABASE {sql_ident(live)} ALLOW_CONNECTIONS true;
ALTER DATABASE {sql_ident(old)} ALLOW_CONNECTIONS true;
"""
    try:
        psql(cfg, sql, db="postgres")
    except ToolError:
        psql(cfg, f"ALTER DATABASE {sql_ident(live)} ALLOW_CONNECTIONS true;", db="postgres")
        raise
    dropped = prune_old_dbs(cfg, keep_old)
    return {"ok": True, "database": live, "old_database": old, "dropped_old": dropped}


def prune_old_dbs(cfg: dict, keep: int) -> list:
    pattern = cfg["scratch_prefix"].replace("_", r"\_") + r"\_old\_%"
    rows = psql(cfg, f"SELECT datname FROM pg_database WHERE datname LIKE "
                     f"{sql_literal(pattern)} ORDER BY datname DESC;", db="postgres")
    dropped = []
    for (name,) in rows[keep:]:
        drop_db(cfg, name)
        dropped.append(name)
    return dropped


# ---------------------------------------------------------------------- commands


def cmd_backup(cfg, args):
    if args.format:
        cfg["format"] = args.format
    now = time.time()
    try:
        with LockSession(cfg, "backup", args.lock_token):
            result = do_backup(cfg, tag=args.tag)
            if not args.no_prune:
                pr = do_prune(cfg, time.time())
                result["pruned"] = pr["deleted"]
                result["future_dated"] = pr["future_dated"]
    except ToolError as exc:
        if exc.code == EXIT_FAIL:
            try:
                write_textfile(cfg, now, False)
            except (OSError, ToolError) as texc:
                log(f"cannot write textfile: {texc}")
        raise
    result["textfile"] = write_textfile(cfg, time.time(), True)
    return result


def cmd_verify(cfg, args):
    entries = scan(cfg["backup_dir"])
    if args.all:
        targets = [e for e in entries if e["kind"] in ("verified", "legacy")]
    else:
        targets = [find_backup(cfg, args.ref, usable_only=False)]
    results, failed = [], []
    for e in targets:
        try:
            results.append({"ok": True, **verify_entry(cfg, e)})
        except ToolError as exc:
            failed.append(e["id"])
            results.append({"ok": False, "id": e["id"], "file": e["file"], "error": str(exc)})
    for r in results:
        r.pop("row_counts", None)
    out = {"ok": not failed, "verified": results, "failed": failed}
    if failed:
        raise _fail_with(out, f"verification failed: {', '.join(failed)}")
    return out


def _fail_with(payload: dict, message: str) -> ToolError:
    err = ToolError(message)
    err.payload = payload
    return err


def cmd_list(cfg, args):
    now = time.time()
    entries = [public(e, now) for e in scan(cfg["backup_dir"])]
    if not args.all:
        entries = [e for e in entries if e["kind"] in ("verified", "legacy")]
    return {"ok": True, "backup_dir": cfg["backup_dir"], "backups": entries,
            "verified_count": sum(1 for e in entries if e["kind"] == "verified")}


def cmd_prune(cfg, args):
    with LockSession(cfg, "prune", args.lock_token):
        return {"ok": True, **do_prune(cfg, time.time(), dry_run=args.dry_run)}


def cmd_restore_test(cfg, args):
    with LockSession(cfg, "restore-test", args.lock_token):
        entry = find_backup(cfg, args.ref)
        target = scratch_name(cfg, "restore_test")
        try:
            result = restore_into(cfg, entry, target)
        finally:
            drop_db(cfg, target)
    result["scratch_dropped"] = True
    if not result["ok"]:
        raise _fail_with(result, f"restore test of {entry['id']}: row counts differ")
    return result


class SafetyBackup:
    """``backup --tag safety --no-prune`` in a child process, beside a scratch restore.

    The two touch different databases (one reads the live one, the other writes a new
    one), so they overlap; the child rides the caller's lock through its token.
    """

    def __init__(self, config_path: str, token: str):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--config", config_path,
             "backup", "--tag", "safety", "--no-prune"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, BMOPS_LOCK_TOKEN=token))

    def result(self) -> dict:
        """Wait for the child (never leave it running: it rides our lock)."""
        try:
            out, _ = self.proc.communicate()
        except BaseException:
            self.proc.terminate()
            self.proc.wait()
            raise
        try:
            data = json.loads(out)
        except ValueError:
            data = {"ok": False, "error": f"printed no JSON (exit {self.proc.returncode})"}
        if self.proc.returncode != 0 or not data.get("ok"):
            data["ok"] = False
            data.setdefault("error", f"exit {self.proc.returncode}")
        return data


def cmd_restore(cfg, args):
    if args.safety_backup and not args.lock_token:
        raise ToolError("--safety-backup needs the lock token of a held lock (run "
                        "'lock acquire' first and pass BMOPS_LOCK_TOKEN)", EXIT_USAGE)
    with LockSession(cfg, "restore", args.lock_token):
        entry = find_backup(cfg, args.ref)
        target = args.scratch or scratch_name(cfg, "restore")
        safety = SafetyBackup(args.config, args.lock_token) if args.safety_backup else None
        try:
            try:
                result = restore_into(cfg, entry, target)
            finally:
                safety_result = safety.result() if safety else None
        except BaseException:
            drop_db(cfg, target)
            raise
        failure = None
        if not result["ok"]:
            failure = f"restore of {entry['id']}: row counts differ"
        if safety_result is not None:
            result["safety_backup"] = safety_result
            if not safety_result["ok"] and failure is None:
                failure = f"safety backup of {cfg['db_name']} failed: {safety_result['error']}"
        if failure:
            drop_db(cfg, target)
            raise _fail_with(result, f"{failure}; scratch database dropped, "
                                     "live database untouched")
        return result


def cmd_check(cfg, args):
    """Checksum-only check of one backup (what restore does before stopping anything)."""
    entry = find_backup(cfg, args.ref)
    sha256_only(entry)
    return {"ok": True, "id": entry["id"], "file": entry["file"], "path": entry["path"],
            "kind": entry["kind"], "format": entry["format"],
            "sha256": entry.get("sha256"), "size_bytes": entry["size_bytes"],
            "created_utc": iso(entry["time"])}


def cmd_swap(cfg, args):
    with LockSession(cfg, "swap", args.lock_token):
        return do_swap(cfg, args.scratch or scratch_name(cfg, "restore"), args.keep_old)


def cmd_drop_old(cfg, args):
    with LockSession(cfg, "drop-old", args.lock_token):
        return {"ok": True, "dropped": prune_old_dbs(cfg, args.keep)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bmops-backup", description=__doc__.split("\n")[0])
    p.add_argument("--config", default=os.environ.get("BMOPS_BACKUP_CONFIG", DEFAULT_CONFIG))
    sub = p.add_subparsers(dest="command", required=True)

    def with_token(sp):
        sp.add_argument("--lock-token", default=os.environ.get("BMOPS_LOCK_TOKEN"),
                        help="token from 'lock acquire' (env BMOPS_LOCK_TOKEN)")
        return sp

    b = with_token(sub.add_parser("backup", help="dump, verify, prune, write textfile"))
    b.add_argument("--tag", help="label stored in the manifest (e.g. safety)")
    b.add_argument("--format", choices=["directory", "custom", "sql_gz"])
    b.add_argument("--no-prune", action="store_true")
    b.set_defaults(func=cmd_backup)
    v = sub.add_parser("verify", help="full verification (checksum + archive read)")
    v.add_argument("ref", nargs="?", help="backup id, file name or path (default: latest)")
    v.add_argument("--all", action="store_true")
    v.set_defaults(func=cmd_verify)
    c = sub.add_parser("check", help="checksum-only check of one backup")
    c.add_argument("ref", nargs="?")
    c.set_defaults(func=cmd_check)
    ls = sub.add_parser("list", help="verified and legacy backups as JSON")
    ls.add_argument("--all", action="store_true", help="include partial/unverified")
    ls.set_defaults(func=cmd_list)
    pr = with_token(sub.add_parser("prune", help="apply retention only"))
    pr.add_argument("--dry-run", action="store_true")
    pr.set_defaults(func=cmd_prune)
    rt = with_token(sub.add_parser("restore-test", help="restore into scratch, compare, drop"))
    rt.add_argument("ref", nargs="?")
    rt.set_defaults(func=cmd_restore_test)
    r = with_token(sub.add_parser("restore", help="restore a backup into a scratch database"))
    r.add_argument("ref", nargs="?")
    r.add_argument("--into-scratch", dest="scratch", metavar="NAME", nargs="?", const=None)
    r.add_argument("--safety-backup", action="store_true",
                   help="take a safety backup of the live database while restoring "
                        "(needs a lock token)")
    r.set_defaults(func=cmd_restore)
    s = with_token(sub.add_parser("swap", help="make the scratch database the live one"))
    s.add_argument("--scratch", metavar="NAME")
    s.add_argument("--keep-old", type=int, default=1, help="old databases to keep")
    s.set_defaults(func=cmd_swap)
    d = with_token(sub.add_parser("drop-old", help="drop old databases kept by swap"))
    d.add_argument("--keep", type=int, default=0)
    d.set_defaults(func=cmd_drop_old)
    lk = sub.add_parser("lock", help="hold the host lock across a playbook")
    lk.add_argument("action", choices=["acquire", "release", "status"])
    lk.add_argument("--owner", default="playbook")
    lk.add_argument("--ttl", type=int, default=3600)
    lk.add_argument("--token", default=os.environ.get("BMOPS_LOCK_TOKEN"))
    lk.set_defaults(func=cmd_lock)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK

    def on_term(signum, _frame):
        raise ToolError(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        cfg = load_config(args.config)
        result = args.func(cfg, args)
    except ToolError as exc:
        log(f"ERROR: {exc}")
        payload = getattr(exc, "payload", {})
        print(json.dumps({**payload, "ok": False, "error": str(exc), "exit_code": exc.code}))
        return exc.code
    except OSError as exc:
        log(f"ERROR: {exc}")
        print(json.dumps({"ok": False, "error": str(exc), "exit_code": EXIT_FAIL}))
        return EXIT_FAIL
    print(json.dumps(result, indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
