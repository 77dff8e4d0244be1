# SPDX-License-Identifier: Apache-2.0
"""Backup file names and manifests.

A backup is ``<id>.<ext>`` plus its manifest ``<id>.json``, written last;
``<id>.<ext>.partial`` while it is being written.

``<id>`` is ``YYYYmmdd_HHMMSS[_N]``: the start time in the host's local time, as the
manual names its files (``20260225_030000``).  The name is for people; it is never
read back as a time.  The rule that keeps it unambiguous in every zone:

* the instant is the manifest's ``created_utc`` (ordering, age and retention read it,
  else the file's mtime), and the manifest says the zone and offset the name was
  written in (``name_zone``, ``name_utc_offset``);
* a name already taken gets ``_1``, ``_2``, ... -- two runs in one second, or the
  hour a DST zone repeats in autumn (01:30 EDT and 01:30 EST are both ``..._013000``);
  the hour skipped in spring never appears, since names come from real instants;
* names written before this rule (UTC) stay valid: their manifests carry the instant.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re

from .fs import write_atomic
from .utils import local_stamp

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
    ext = m["ext"]
    return {
        "id": m["stamp"] + (f"_{m['seq']}" if m["seq"] else ""),
        "ext": ext,
        "partial": bool(m["partial"]),
        **EXT_INFO[ext],
    }


def new_id(backup_dir: str, now: float, tz: dt.tzinfo = dt.UTC) -> str:
    """A fresh id for a backup started at ``now`` (local time in ``tz``): taken ones get
    a _N suffix."""
    base = local_stamp(now, tz)[0]
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
