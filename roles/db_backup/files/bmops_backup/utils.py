# SPDX-License-Identifier: Apache-2.0
"""Constants and small helpers shared by every module."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import zoneinfo

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


def zone(name: str) -> dt.tzinfo:
    """The zone of backup names: an IANA name, or "" for the host's own (the zone
    /etc/localtime links to; its fixed offset when it is not a link)."""
    if name:
        return zoneinfo.ZoneInfo(name)
    target = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in target:
        try:
            return zoneinfo.ZoneInfo(target.split("/zoneinfo/", 1)[1])
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            pass
    return dt.datetime.fromtimestamp(time.time()).astimezone().tzinfo


def local_stamp(now: float, tz: dt.tzinfo) -> tuple[str, str, str]:
    """``now`` in ``tz``: (YYYYmmdd_HHMMSS, zone name, +HH:MM offset)."""
    local = dt.datetime.fromtimestamp(now, dt.UTC).astimezone(tz)
    offset = local.strftime("%z")
    return (local.strftime("%Y%m%d_%H%M%S"), getattr(tz, "key", None) or local.tzname(),
            f"{offset[:3]}:{offset[3:]}")


def pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError, TypeError):
        return False
