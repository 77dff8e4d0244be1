# SPDX-License-Identifier: Apache-2.0
"""Restoring: into a scratch database first (errors fatal, row counts compared), then
swapping it in.  The ``restore``, ``restore-test``, ``swap`` and ``drop-old`` commands.

The tool only ever creates, renames or drops databases named <scratch_prefix>_* and
the live database (by rename during ``swap``).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import subprocess
import sys
import threading
import time

from .archive import iter_tar
from .catalogue import find_backup
from .command_wrappers import copy_range, feeding, psql, run_in_db, sql_ident, sql_literal
from .compression import DECOMPRESS, decompress_range, member_codec
from .config import exec_prefix
from .exceptions import EXIT_USAGE, ToolError, fail_with
from .fs import ContainerFS
from .lockfile import LockSession
from .verify import inspect_archive, sha256_only

# The directory that holds this package: what a child run of the tool imports.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scratch_name(cfg: dict, purpose: str) -> str:
    return f"{cfg['scratch_prefix']}_{purpose}"


def check_scratch_name(cfg: dict, name: str) -> None:
    if not re.fullmatch(r"[a-z0-9_]{1,63}", name) or not name.startswith(
            cfg["scratch_prefix"] + "_"):
        raise ToolError(f"refusing to touch database {name!r}: scratch databases must be "
                        f"named {cfg['scratch_prefix']}_*", EXIT_USAGE)


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
                base, codec = member_codec(name)
                dest = fs.host(f"{work}/{base}")
                if codec is None or not re.fullmatch(r"\d+\.dat", base):
                    # toc.dat, large-object files: plain files, written up front
                    with open(dest, "wb") as out:
                        os.fchmod(out.fileno(), 0o600)
                        if codec is None:
                            copy_range(fh, off, size, out)
                        else:
                            decompress_range(entry["path"], off, size, codec, out.fileno())
                    os.chown(dest, fs.uid, fs.gid)
                else:
                    os.mkfifo(dest, 0o600)
                    os.chown(dest, fs.uid, fs.gid)
                    pending[dest] = (off, size, codec, name)

        def fill(fd, off, size, codec, name):
            try:
                os.set_blocking(fd, True)
                decompress_range(entry["path"], off, size, codec, fd)
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


class SafetyBackup:
    """``backup --tag safety --no-prune`` in a child process, beside a scratch restore.

    The two touch different databases (one reads the live one, the other writes a new
    one), so they overlap; the child rides the caller's lock through its token.  The
    child is ``python3 -B -P -m bmops_backup`` with this package's directory first on
    its PYTHONPATH (and no bytecode written into the installed package).
    """

    def __init__(self, config_path: str, token: str):
        path = os.environ.get("PYTHONPATH")
        self.proc = subprocess.Popen(
            [sys.executable, "-B", "-P", "-m", "bmops_backup", "--config", config_path,
             "backup", "--tag", "safety", "--no-prune"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, BMOPS_LOCK_TOKEN=token,
                     PYTHONPATH=PACKAGE_PARENT + (os.pathsep + path if path else "")))

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
        raise fail_with(result, f"restore test of {entry['id']}: row counts differ")
    return result


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
            raise fail_with(result, f"{failure}; scratch database dropped, "
                                    "live database untouched")
        return result


def cmd_swap(cfg, args):
    with LockSession(cfg, "swap", args.lock_token):
        return do_swap(cfg, args.scratch or scratch_name(cfg, "restore"), args.keep_old)


def cmd_drop_old(cfg, args):
    with LockSession(cfg, "drop-old", args.lock_token):
        return {"ok": True, "dropped": prune_old_dbs(cfg, args.keep)}
