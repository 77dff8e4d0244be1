# SPDX-License-Identifier: Apache-2.0
"""Backup file names and manifests.

A backup is ``<id>.<ext>`` (``<id>`` = UTC ``YYYYmmdd_HHMMSS[_N]``) plus its manifest
``<id>.json``, written last; ``<id>.<ext>.partial`` while it is being written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re

from .fs import write_atomic

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


def new_id(backup_dir: str, now: float) -> str:
    """A fresh id for a backup started at ``now``: taken ones get a _N suffix."""
    base = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%d_%H%M%S")
    taken = {parse_name(n)["id"] for n in os.listdir(backup_dir) if parse_name(n)}
    taken |= {n[:-5] for n in os.listdir(backup_dir) if MANIFEST_RE.match(n)}
    bid, seq = base, 0
    while bid in taken:
        seq += 1
        bid = f"{base}_{seq}"
    return bid


def manifest_path(backup_dir: str, bid: str) -> str:
    return os.path.join(backup_dir, f"{bid}.json")


def read_manifest(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def write_manifest(backup_dir: str, manifest: dict) -> None:
    """Write ``<id>.json`` atomically (0600); the backup counts from this moment."""
    write_atomic(manifest_path(backup_dir, manifest["id"]),
                 json.dumps(manifest, indent=2) + "\n")
