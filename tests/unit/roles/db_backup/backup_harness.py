# SPDX-License-Identifier: Apache-2.0
"""Helpers of the bmops_backup tests: run the tool as cron does (``python3 -m
bmops_backup`` with the package's directory on PYTHONPATH), list a directory, write a
fake backup with its manifest, pack a fixture dump."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bmops_backup
from bmops_backup.archive import pack_directory
from bmops_backup.utils import iso

# roles/db_backup/files, put on sys.path by conftest.py
FILES = Path(bmops_backup.__file__).resolve().parent.parent
# -P: the working directory never shadows the package under test
TOOL = [sys.executable, "-P", "-m", "bmops_backup"]
DAY = 86400
NOW = 1_795_000_000.0  # 2026-11-18


def tool_env() -> dict:
    """The current environment with the package's directory first on PYTHONPATH."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(FILES) + (os.pathsep + path if path else ""))


def run(env, *args):
    """Run the tool as cron does; return (rc, parsed stdout, stderr)."""
    res = subprocess.run([*TOOL, "--config", str(env["cfg"]), *args],
                         capture_output=True, text=True, check=False, env=tool_env())
    try:
        out = json.loads(res.stdout)
    except ValueError:
        out = res.stdout
    return res.returncode, out, res.stderr


def files(d):
    return sorted(p.name for p in Path(d).iterdir())


def write_backup(d, bid, ext="dump.zst", size=1000, manifest=True, **man):
    (d / f"{bid}.{ext}").write_bytes(b"x" * size)
    if manifest:
        data = {"id": bid, "file": f"{bid}.{ext}", "verified": True, "size_bytes": size,
                "sha256": "0" * 64, "created_utc": iso(NOW), **man}
        (d / f"{bid}.json").write_text(json.dumps(data))


FIXTURES = Path(__file__).parent / "fixtures"


def pack(src: Path, out: Path, codec: str = "zstd") -> dict:
    """Pack a pg_dump -Fd directory into the new .dir.tar ``out``."""
    with open(out, "xb") as fh:
        return pack_directory(str(src), fh, codec, 1)
