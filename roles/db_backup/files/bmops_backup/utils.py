# SPDX-License-Identifier: Apache-2.0
"""Constants and small helpers shared by every module."""

from __future__ import annotations

import datetime as dt
import os
import sys

TOOL_VERSION = "1.1.0"
CHUNK = 1024 * 1024
DAY = 86400
# A backup dated more than this in the future is "future-dated" (clock skew).
SKEW_TOLERANCE = 300


def log(msg: str) -> None:
    """One line on stderr (cron appends it to the backup log), UTC timestamp first."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} bmops-backup: {msg}", file=sys.stderr, flush=True)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.UTC).timestamp()


def pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError, TypeError):
        return False
