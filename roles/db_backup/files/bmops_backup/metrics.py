# SPDX-License-Identifier: Apache-2.0
"""The outcome of every backup run: a record in the state directory (``last-run.json``,
and ``last-scheduled-run.json`` for the cron job's runs) and the node_exporter
textfile (bmops_backup.prom); the ``status`` command reads them back."""

from __future__ import annotations

import json
import os
import time

from .catalogue import scan
from .exceptions import ToolError
from .fs import write_atomic
from .utils import iso, log, parse_iso

LAST_RUN = "last-run.json"
LAST_SCHEDULED_RUN = "last-scheduled-run.json"


def _record_path(cfg: dict, scheduled: bool) -> str:
    return os.path.join(cfg["state_dir"], LAST_SCHEDULED_RUN if scheduled else LAST_RUN)


def read_run(cfg: dict, scheduled: bool) -> dict | None:
    """The recorded outcome of the last (scheduled) run, or None."""
    try:
        with open(_record_path(cfg, scheduled), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_run(cfg: dict, record: dict, scheduled: bool) -> str | None:
    """Record one run's outcome; never raises (a full disk must not hide the failure).

    The textfile lives elsewhere (node_exporter's directory), so a full backup
    file system still ends as ``bmops_backup_last_run_success 0``.
    """
    record = {**record, "scheduled": scheduled,
              "finished_utc": iso(record.get("finished", time.time()))}
    text = json.dumps(record, sort_keys=True) + "\n"
    try:
        os.makedirs(cfg["state_dir"], 0o700, exist_ok=True)
    except OSError as exc:
        log(f"cannot create the state directory {cfg['state_dir']}: {exc}")
    for sched in ([False, True] if scheduled else [False]):
        try:
            write_atomic(_record_path(cfg, sched), text)
        except OSError as exc:
            log(f"cannot record the run outcome in {_record_path(cfg, sched)}: {exc}")
    try:
        return write_textfile(cfg, record.get("finished", time.time()), bool(record["ok"]),
                              record if scheduled else read_run(cfg, True))
    except (OSError, ToolError) as exc:
        log(f"cannot write the textfile: {exc}")
        return None


def write_textfile(cfg: dict, now: float, run_ok: bool,
                   scheduled_run: dict | None = None) -> str | None:
    tdir = cfg.get("textfile_dir")
    if not tdir or not os.path.isdir(tdir):
        return None
    try:
        entries = scan(cfg["backup_dir"])
    except (OSError, ToolError):
        entries = []  # the outcome still goes out
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
    if scheduled_run:
        lines += [
            "# HELP bmops_backup_last_scheduled_run_success 1 if the last scheduled "
            "(cron) backup run succeeded.",
            "# TYPE bmops_backup_last_scheduled_run_success gauge",
            f"bmops_backup_last_scheduled_run_success {1 if scheduled_run.get('ok') else 0}",
            "# HELP bmops_backup_last_scheduled_run_timestamp_seconds Time of the last "
            "scheduled backup run.",
            "# TYPE bmops_backup_last_scheduled_run_timestamp_seconds gauge",
            "bmops_backup_last_scheduled_run_timestamp_seconds "
            f"{float(scheduled_run.get('finished', 0)):.0f}",
        ]
    path = os.path.join(tdir, "bmops_backup.prom")
    write_atomic(path, "\n".join(lines) + "\n", 0o644)
    return path


def cmd_status(cfg, _args):
    """Read-only, no lock: the newest verified backup and the last runs' outcomes."""
    now = time.time()
    entries = scan(cfg["backup_dir"])
    verified = [e for e in entries if e["kind"] == "verified"]
    newest = None
    if verified:
        e = verified[0]
        newest = {"id": e["id"], "tag": e.get("tag"), "created_utc": iso(e["time"]),
                  "age_seconds": int(now - e["time"])}
    return {"ok": True, "newest_verified": newest, "verified_count": len(verified),
            "unverified": [e["id"] for e in entries
                           if e["kind"] == "unverified" and not e.get("orphan_manifest")],
            "last_run": read_run(cfg, False), "last_scheduled_run": read_run(cfg, True)}
