# SPDX-License-Identifier: Apache-2.0
"""The ``recover`` command: put right what a run that died left behind.

Only when no run holds the host lock (a run that died let go of it with its
process): start the app services that are not running, reopen the live and kept
databases to connections, drop scratch databases (<prefix>_*, never the kept
<prefix>_old_* ones), remove the restore's state files, the work directories of
dead runs in the db container and ``*.partial`` files in the backup directory.
restore_db.yml runs it first; the restore's systemd unit runs it when it ends.
"""

from __future__ import annotations

import os
import re

from . import runstate
from .command_wrappers import psql, sql_ident, sql_literal
from .exceptions import EXIT_LOCKED, ToolError
from .fs import ContainerFS
from .lockfile import Lock
from .restore_executor import drop_db, is_old_db
from .restore_run import service_states, start_services
from .utils import log


def leftovers(cfg: dict) -> dict:
    prefix = cfg["scratch_prefix"]
    rows = psql(cfg, "SELECT datname, datallowconn FROM pg_database WHERE datname = "
                     f"{sql_literal(cfg['db_name'])} OR datname LIKE "
                     f"{sql_literal(prefix.replace('_', chr(92) + '_') + chr(92) + '_%')};",
                db="postgres")
    scratch = sorted(n for n, _ in rows if n != cfg["db_name"] and not is_old_db(cfg, n))
    closed = sorted(n for n, allow in rows if allow == "f" and n not in scratch)
    services = list(cfg["app_services"])
    stopped = sorted(s for s, st in service_states(cfg, services).items() if st != "running")
    rdir = runstate.run_dir(cfg)
    state = sorted(n for n in os.listdir(rdir) if re.fullmatch(
        r"verified-.+\.json|services-stopped\.json|test-paused", n)) \
        if os.path.isdir(rdir) else []
    partial = sorted(n for n in os.listdir(cfg["backup_dir"]) if n.endswith(".partial")) \
        if os.path.isdir(cfg["backup_dir"]) else []
    return {"stopped_services": stopped, "closed_databases": closed,
            "scratch_databases": scratch, "state_files": state, "partial_files": partial}


def cmd_recover(cfg, args):
    lock = Lock(cfg["lock_file"])
    try:
        lock.acquire("recover")
    except ToolError as exc:
        if exc.code != EXIT_LOCKED:
            raise
        holder = {k: v for k, v in lock.holder().items() if k != "token"}
        return {"ok": True, "busy": True, "holder": holder, "changed": False,
                "note": "a run holds the host lock: nothing touched"}
    try:
        found = leftovers(cfg)
        changed = any(found.values())
        if args.dry_run or not changed:
            return {"ok": True, "busy": False, "changed": False, "dry_run": args.dry_run,
                    **found}
        for name in found["closed_databases"]:
            log(f"recover: reopening database {name} to connections")
            psql(cfg, f"ALTER DATABASE {sql_ident(name)} ALLOW_CONNECTIONS true;",
                 db="postgres")
        for name in found["scratch_databases"]:
            log(f"recover: dropping scratch database {name}")
            drop_db(cfg, name)
        if found["stopped_services"]:
            log(f"recover: starting {', '.join(found['stopped_services'])}")
            start_services(cfg, found["stopped_services"])
        for name in found["state_files"]:
            runstate.remove(cfg, name)
        for name in found["partial_files"]:
            os.unlink(os.path.join(cfg["backup_dir"], name))
        try:
            ContainerFS(cfg).clean_stale()
        except (OSError, ToolError) as exc:
            log(f"recover: work directories not checked: {exc}")
        return {"ok": True, "busy": False, "changed": True, "dry_run": False, **found}
    finally:
        lock.release()
