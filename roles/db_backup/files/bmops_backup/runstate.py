# SPDX-License-Identifier: Apache-2.0
"""State a restore leaves beside the lock file (the root-only run directory): which
scratch database it verified (name + OID, so ``swap`` refuses any other), which app
services it stopped, and the test hook that pauses a run at a named step.

Test hook (tests only): when ``<run dir>/test-pause-at`` holds a step name, the run
writes ``<run dir>/test-paused`` (the step) on reaching that step and waits until
``test-pause-at`` is removed (at most 600 s).  Steps: ``restored`` (scratch restored
and safety backup taken, nothing stopped), ``stopped`` (services stopped),
``swap`` (live database closed to connections, not renamed yet), ``swapped``
(renamed, services not started yet).  Only root can create files there.
"""

from __future__ import annotations

import json
import os
import time

from .command_wrappers import psql, sql_literal
from .exceptions import ToolError
from .fs import write_atomic
from .utils import log

PAUSE_FILE = "test-pause-at"
PAUSED_FILE = "test-paused"
STOPPED_FILE = "services-stopped.json"


def run_dir(cfg: dict) -> str:
    return os.path.dirname(cfg["lock_file"]) or "."


def path(cfg: dict, name: str) -> str:
    return os.path.join(run_dir(cfg), name)


def checkpoint(cfg: dict, step: str) -> None:
    """The test hook: pause here when test-pause-at names this step."""
    try:
        with open(path(cfg, PAUSE_FILE), encoding="utf-8") as fh:
            wanted = fh.read().strip()
    except OSError:
        return
    if wanted != step:
        return
    log(f"test hook: paused at step {step} until {path(cfg, PAUSE_FILE)} is removed")
    write_atomic(path(cfg, PAUSED_FILE), step + "\n")
    deadline = time.monotonic() + 600
    while os.path.exists(path(cfg, PAUSE_FILE)) and time.monotonic() < deadline:
        time.sleep(0.2)
    remove(cfg, PAUSED_FILE)


def remove(cfg: dict, name: str) -> bool:
    try:
        os.unlink(path(cfg, name))
        return True
    except FileNotFoundError:
        return False


def db_oid(cfg: dict, name: str) -> str | None:
    rows = psql(cfg, f"SELECT oid FROM pg_database WHERE datname = {sql_literal(name)};",
                db="postgres")
    return rows[0][0] if rows else None


def verified_name(cfg: dict, scratch: str) -> str:
    """One record per stack (the DR drill's shares the directory) and scratch name."""
    return f"verified-{cfg['project_name']}-{scratch}.json"


def record_verified(cfg: dict, scratch: str, backup_id: str) -> None:
    """The restore verified ``scratch`` (row counts matched): remember it by OID."""
    write_atomic(path(cfg, verified_name(cfg, scratch)), json.dumps(
        {"scratch": scratch, "oid": db_oid(cfg, scratch), "backup": backup_id,
         "pid": os.getpid(), "time": time.time()}) + "\n")


def check_verified(cfg: dict, scratch: str) -> dict:
    """Refuse a scratch database that no restore verified, or that changed since."""
    try:
        with open(path(cfg, verified_name(cfg, scratch)), encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        raise ToolError(f"refusing to swap in {scratch}: no restore verified it (run "
                        "'restore ID --into-scratch' first)") from None
    oid = db_oid(cfg, scratch)
    if oid is None or rec.get("oid") != oid:
        raise ToolError(f"refusing to swap in {scratch}: it is not the database the restore "
                        f"of {rec.get('backup')} verified (recreated since?)")
    return rec


def forget_verified(cfg: dict, scratch: str) -> None:
    remove(cfg, verified_name(cfg, scratch))


def mark_stopped(cfg: dict, services: list) -> None:
    write_atomic(path(cfg, STOPPED_FILE), json.dumps(
        {"services": services, "pid": os.getpid(), "time": time.time()}) + "\n")
