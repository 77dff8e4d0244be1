# SPDX-License-Identifier: Apache-2.0
"""The node_exporter textfile (bmops_backup.prom) written after every backup run."""

from __future__ import annotations

import os

from .catalogue import scan
from .fs import write_atomic
from .utils import parse_iso


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
