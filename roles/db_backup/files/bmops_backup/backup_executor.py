# SPDX-License-Identifier: Apache-2.0
"""Taking a backup: one path for every format (write .partial, sanity, verify, manifest,
rename); only the dump and the verification differ.  The ``backup`` command.

Publishing writes the manifest first and renames the archive last: a run that dies
in between leaves a manifest without data (harmless, pruned) and never a final
archive without its manifest.  Every run records its outcome (metrics module),
whatever ended it: the tool's errors, an OS error such as a full disk, a signal."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import time

from .archive import inspect_dir_tar, pack_directory
from .command_wrappers import Pipeline, psql, run_in_db
from .compression import DECOMPRESS, compress_argv
from .config import exec_prefix
from .exceptions import EXIT_FAIL, EXIT_USAGE, ToolError
from .fs import ContainerFS, fsync_dir
from .infofile import manifest_path, new_id, write_manifest
from .lockfile import LockSession
from .metrics import record_run
from .retention import do_prune
from .utils import TOOL_VERSION, iso, local_stamp, log, zone
from .verify import inspect_archive


def pick_codec(cfg: dict) -> str:
    if cfg["format"] == "sql_gz":
        return "gzip"
    if cfg["codec"] == "auto":
        return "zstd" if shutil.which("zstd") else "gzip"
    return cfg["codec"]


def check_free_space(cfg: dict, db_size: int) -> dict:
    st = os.statvfs(cfg["backup_dir"])
    free = st.f_bavail * st.f_frsize
    need = int(db_size * float(cfg["size_ratio"])) + int(cfg["min_free_bytes"])
    if free < need:
        raise ToolError(f"not enough free space in {cfg['backup_dir']}: {free} bytes free, "
                        f"need {need} (database {db_size} x ratio {cfg['size_ratio']} + "
                        f"minimum {cfg['min_free_bytes']})")
    return {"free_bytes": free, "needed_bytes": need}


def set_phase(progress: dict, phase: str, where: str, path: str | None = None) -> None:
    """Where the run is, for the message of a failure: phase, place, host path."""
    progress.update(phase=phase, where=where, path=path)


def do_backup(cfg: dict, tag: str | None = None, progress: dict | None = None) -> dict:
    progress = {} if progress is None else progress
    started = time.time()
    bdir = cfg["backup_dir"]
    set_phase(progress, "preflight", f"backup directory {bdir}", bdir)
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
    bid = new_id(bdir, started, zone(cfg["timezone"]))
    if fmt == "directory":
        ext = "dir.tar"
    else:
        ext = "sql.gz" if fmt == "sql_gz" else ("dump.zst" if codec == "zstd" else "dump.gz")
    final = os.path.join(bdir, f"{bid}.{ext}")
    partial = final + ".partial"
    jobs = f", {cfg['dump_jobs']} jobs" if fmt == "directory" else ""
    log(f"backup {bid}: dumping {cfg['db_name']} ({db_size} bytes) as {fmt}/{codec}{jobs}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    manifest_written = False
    try:
        with os.fdopen(fd, "wb") as out:
            if fmt == "directory":
                info = dump_directory(cfg, out, codec, db_size, progress, partial)
            else:
                set_phase(progress, "dump", f"host file {partial}", partial)
                dump_stream(cfg, fmt, codec, out)
            out.flush()
            os.fsync(out.fileno())
        written = time.time()
        size = os.path.getsize(partial)
        if size < int(cfg["min_backup_bytes"]):
            raise ToolError(f"dump is only {size} bytes: not a sane backup")
        log(f"backup {bid}: verifying {size} bytes")
        set_phase(progress, "verify", f"host file {partial}", partial)
        if fmt == "directory":
            check = inspect_dir_tar(partial, count=False)
        else:
            check = info = inspect_archive(cfg, partial, fmt, codec)
        if check["size_bytes"] != size:
            raise ToolError("file changed while it was verified")
        manifest = _manifest(cfg, bid, final, tag, codec, (started, written, time.time()),
                             info, check, size, db_size, server_version)
        set_phase(progress, "publish", f"backup directory {bdir}", bdir)
        write_manifest(bdir, manifest)
        manifest_written = True
        os.rename(partial, final)
        fsync_dir(bdir)
    except BaseException:
        if manifest_written and not os.path.exists(final):
            os.unlink(manifest_path(bdir, bid))
            log(f"backup {bid}: removed its manifest (the archive was not published)")
        if os.path.exists(partial):
            os.unlink(partial)
            log(f"backup {bid}: removed {partial}")
        raise
    return _publish(manifest, final, space)


def _manifest(cfg, bid, final, tag, codec, times, info, check, size, db_size,
              server_version) -> dict:
    """The manifest of a verified archive; ``times``: started, written, finished."""
    started, written, finished = times
    fmt = cfg["format"]
    if fmt == "directory":
        phases = {"dump_seconds": round(info["dumped_at"] - started, 3),
                  "pack_seconds": round(written - info["dumped_at"], 3)}
        source, extra = "dump table files", {"archive_version": info["archive_version"]}
    else:
        phases = {"dump_seconds": round(written - started, 3)}
        source, extra = "dump COPY data", {}
    return {
        "id": bid, "file": os.path.basename(final), "tag": tag, "verified": True,
        "created_utc": iso(started), "finished_utc": iso(finished),
        **dict(zip(("name_zone", "name_utc_offset"),
                   local_stamp(started, zone(cfg["timezone"]))[1:], strict=True)),
        "database": cfg["db_name"], "server_version": server_version,
        "format": fmt, "codec": codec,
        "size_bytes": size, "sha256": check["sha256"],
        "db_size_bytes": db_size, "sql_bytes": info["sql_bytes"], **extra,
        "duration_seconds": round(finished - started, 3), **phases,
        "verify_seconds": round(finished - written, 3),
        "row_counts": info["row_counts"], "row_counts_source": source,
        "host": socket.gethostname(), "tool_version": TOOL_VERSION,
    }


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


def dump_directory(cfg: dict, out, codec: str, db_size: int, progress: dict,
                   partial: str) -> dict:
    """pg_dump -Fd inside the container, then pack; the work directory is always removed.

    The TOC is read once, by the host's own reader (module toc) while packing: it finds
    every table file, checks each is there and ends with pg_dump's end-of-data marker,
    and names the tables; ``pg_restore -l`` would tell nothing more (roles/db_backup
    README, "One TOC reader").
    """
    fs = ContainerFS(cfg)
    set_phase(progress, "dump", f"db container work directory {cfg['spool_dir']}")
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
        set_phase(progress, "pack", f"host file {partial}", partial)
        info = pack_directory(fs.host(target), out, codec, int(cfg["zstd_level"]))
        info["dumped_at"] = dumped
        return info
    finally:
        fs.remove(spool)


def _publish(manifest: dict, final: str, space: dict) -> dict:
    """The result of a published backup (manifest written, archive renamed)."""
    bid = manifest["id"]
    log(f"backup {bid}: verified, sha256 {manifest['sha256']}")
    counts = manifest["row_counts"]
    return {"ok": True, "id": bid, "path": final, **{k: manifest[k] for k in (
        "tag", "sha256", "size_bytes", "duration_seconds", "format", "codec",
        "server_version", "created_utc")}, "tables": len(counts),
        "rows": sum(counts.values()), "space": space}


def describe_failure(exc: BaseException, progress: dict) -> str:
    """One sentence: the phase, the place, the error, and for a full disk what is free."""
    phase = progress.get("phase", "preflight")
    msg = f"backup failed during {phase} ({progress.get('where', 'before it started')}): {exc}"
    no_space = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    if (no_space or "No space left" in str(exc)) and progress.get("path"):
        try:
            path = progress["path"]
            st = os.statvfs(path if os.path.isdir(path) else os.path.dirname(path) or ".")
            msg += (f"; the file system of {progress['path']} has "
                    f"{st.f_bavail * st.f_frsize} bytes free")
        except OSError:
            pass
    return msg


def cmd_backup(cfg, args):
    if args.format:
        cfg["format"] = args.format
    now = time.time()
    progress: dict = {}
    scheduled = bool(getattr(args, "scheduled", False))
    try:
        with LockSession(cfg, "backup", args.lock_token, wait=getattr(args, "wait", 0)):
            result = do_backup(cfg, tag=args.tag, progress=progress)
            if not args.no_prune:
                set_phase(progress, "prune", f"backup directory {cfg['backup_dir']}")
                pr = do_prune(cfg, time.time())
                result["pruned"] = pr["deleted"]
                result["future_dated"] = pr["future_dated"]
                result["kept_unverified"] = pr["kept_unverified"]
    except (ToolError, OSError) as exc:
        code = exc.code if isinstance(exc, ToolError) else EXIT_FAIL
        # Before the dump (lock busy, bad config, no room) the tool's own error says it
        # all; from the dump on, and for any OS error, the phase and place are added.
        plain = isinstance(exc, ToolError) and progress.get("phase", "preflight") == "preflight"
        message = str(exc) if plain else describe_failure(exc, progress)
        record_run(cfg, {"ok": False, "started": now, "finished": time.time(),
                         "phase": progress.get("phase", "preflight"), "error": message,
                         "exit_code": code, "tag": args.tag}, scheduled)
        raise ToolError(message, code) from exc
    result["textfile"] = record_run(
        cfg, {"ok": True, "started": now, "finished": time.time(), "id": result["id"],
              "tag": args.tag}, scheduled)
    return result
