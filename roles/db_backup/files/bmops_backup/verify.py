# SPDX-License-Identifier: Apache-2.0
"""Reading a backup end to end (checksum, decompression, archive, row counts) and the
``verify`` and ``check`` commands."""

from __future__ import annotations

import hashlib

from .archive import inspect_dir_tar
from .catalogue import find_backup, scan
from .command_wrappers import feeding
from .compression import DECOMPRESS
from .config import exec_prefix
from .exceptions import ToolError, fail_with
from .utils import CHUNK, iso


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
        raise fail_with(out, f"verification failed: {', '.join(failed)}")
    return out


def cmd_check(cfg, args):
    """Checksum-only check of one backup (what restore does before stopping anything)."""
    entry = find_backup(cfg, args.ref)
    sha256_only(entry)
    return {"ok": True, "id": entry["id"], "file": entry["file"], "path": entry["path"],
            "kind": entry["kind"], "format": entry["format"],
            "sha256": entry.get("sha256"), "size_bytes": entry["size_bytes"],
            "created_utc": iso(entry["time"])}
