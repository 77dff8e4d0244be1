# SPDX-License-Identifier: Apache-2.0
"""The ``restore`` command: under the host lock (held by this process, so the kernel
drops it when the process dies), restore into a scratch database beside a safety
backup; with ``--swap``, also stop the app services, swap and start them again, all in
this one process.  restore_db.yml runs it detached from the controller (a transient
systemd unit), so a dead controller never leaves the app down: the unit goes on, and
its ExecStopPost (``recover``) starts the services if the unit itself was killed.
"""

from __future__ import annotations

import subprocess

from . import runstate
from .catalogue import find_backup
from .exceptions import EXIT_USAGE, ToolError, fail_with
from .lockfile import LockSession
from .restore_executor import SafetyBackup, do_swap, drop_db, restore_into, scratch_name
from .utils import log


def compose(cfg: dict, *args: str) -> str:
    argv = [cfg["docker"], "compose", "-p", cfg["project_name"], "--project-directory",
            cfg["project_dir"], *args]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ToolError(f"command not found: {cfg['docker']}") from None
    if res.returncode != 0:
        raise ToolError(f"docker compose {args[0]} exited {res.returncode}: "
                        f"{res.stderr.strip()[-600:]}")
    return res.stdout


def service_states(cfg: dict, services: list) -> dict:
    if not services:
        return {}
    out = compose(cfg, "ps", "-a", "--format", "{{.Service}} {{.State}}", *services)
    states = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    return {s: states.get(s, "missing") for s in services}


def start_services(cfg: dict, services: list) -> None:
    compose(cfg, "up", "-d", "--no-recreate", "--no-deps", *services)
    runstate.remove(cfg, runstate.STOPPED_FILE)


def swap_and_start(cfg: dict, scratch: str, keep_old: int) -> dict:
    """Stop the app services, swap, start them again (always, even on failure)."""
    services = list(cfg["app_services"])
    runstate.mark_stopped(cfg, services)
    try:
        log(f"stopping {', '.join(services)}")
        compose(cfg, "stop", *services)
        runstate.checkpoint(cfg, "stopped")
        result = do_swap(cfg, scratch, keep_old)
        runstate.checkpoint(cfg, "swapped")
    finally:
        log(f"starting {', '.join(services)}")
        start_services(cfg, services)
    result["services_started"] = services
    return result


def cmd_restore(cfg, args):
    if args.safety_backup and not args.lock_token and not args.swap:
        raise ToolError("--safety-backup needs the lock token of a held lock (run "
                        "'lock acquire' first and pass BMOPS_LOCK_TOKEN), or --swap (the "
                        "whole restore in this one process, under its own lock)", EXIT_USAGE)
    with LockSession(cfg, "restore", args.lock_token) as session:
        entry = find_backup(cfg, args.ref)
        target = args.scratch or scratch_name(cfg, "restore")
        runstate.forget_verified(cfg, target)
        safety = SafetyBackup(args.config, session.child_token) if args.safety_backup \
            else None
        try:
            try:
                result = restore_into(cfg, entry, target)
            finally:
                safety_result = safety.result() if safety else None
        except BaseException:
            drop_db(cfg, target)
            raise
        result["chosen"] = entry.get("chosen")
        failure = None
        if not result["ok"]:
            failure = f"restore of {entry['id']}: row counts differ"
        if safety_result is not None:
            result["safety_backup"] = safety_result
            if not safety_result["ok"] and failure is None:
                failure = f"safety backup of {cfg['db_name']} failed: {safety_result['error']}"
        if failure:
            drop_db(cfg, target)
            raise fail_with(result, f"{failure}; scratch database dropped, "
                                    "live database untouched")
        runstate.record_verified(cfg, target, entry["id"])
        runstate.checkpoint(cfg, "restored")
        if args.swap:
            try:
                result["swap"] = swap_and_start(cfg, target, args.keep_old)
            except ToolError as exc:
                drop_db(cfg, target)
                runstate.forget_verified(cfg, target)
                raise fail_with(result, f"swap failed, services started on the previous "
                                        f"database: {exc}") from None
        return result
