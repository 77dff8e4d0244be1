# SPDX-License-Identifier: Apache-2.0
"""Command line: parse the arguments, load the configuration, dispatch to the command,
print its JSON result and return the exit code.  No command logic lives here."""

from __future__ import annotations

import argparse
import json
import os
import signal

from .backup_executor import cmd_backup
from .catalogue import cmd_list
from .config import DEFAULT_CONFIG, load_config
from .exceptions import EXIT_FAIL, EXIT_OK, EXIT_USAGE, ToolError
from .fs import write_atomic
from .lockfile import cmd_lock
from .metrics import cmd_status
from .offsite import DEFAULT_OFFSITE_CONFIG, cmd_offsite
from .recover import cmd_recover
from .restore_executor import cmd_drop_old, cmd_restore_test, cmd_swap
from .restore_run import cmd_restore
from .retention import cmd_prune
from .utils import log
from .verify import cmd_check, cmd_verify

DESCRIPTION = "bmops-backup: verified PostgreSQL backups and restores for the backup-mgmt stack."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bmops-backup", description=DESCRIPTION)
    p.add_argument("--config", default=os.environ.get("BMOPS_BACKUP_CONFIG", DEFAULT_CONFIG))
    sub = p.add_subparsers(dest="command", required=True)

    def with_token(sp):
        sp.add_argument("--lock-token", default=os.environ.get("BMOPS_LOCK_TOKEN"),
                        help="token from 'lock acquire' (env BMOPS_LOCK_TOKEN)")
        return sp

    b = with_token(sub.add_parser("backup", help="dump, verify, prune, write textfile"))
    b.add_argument("--tag", help="label stored in the manifest (e.g. safety)")
    b.add_argument("--format", choices=["directory", "custom", "sql_gz"])
    b.add_argument("--no-prune", action="store_true")
    b.add_argument("--scheduled", action="store_true",
                   help="the cron job's run: its outcome is also the last scheduled run's")
    b.add_argument("--wait", type=int, default=0, metavar="SECONDS",
                   help="when another run holds the host lock, wait up to this long")
    b.add_argument("--container", metavar="NAME",
                   help="dump this PostgreSQL container (a recovered scratch cluster beside "
                        "the stack) instead of the stack's db")
    b.set_defaults(func=cmd_backup)
    v = sub.add_parser("verify", help="full verification (checksum + archive read)")
    v.add_argument("ref", nargs="?", help="backup id, file name or path (default: latest)")
    v.add_argument("--all", action="store_true")
    v.set_defaults(func=cmd_verify)
    c = sub.add_parser("check", help="checksum-only check of one backup")
    c.add_argument("ref", nargs="?")
    c.set_defaults(func=cmd_check)
    st = sub.add_parser("status", help="newest verified backup, last (scheduled) run outcome")
    st.set_defaults(func=cmd_status)
    ls = sub.add_parser("list", help="verified and legacy backups as JSON")
    ls.add_argument("--all", action="store_true", help="include partial/unverified")
    ls.set_defaults(func=cmd_list)
    pr = with_token(sub.add_parser("prune", help="apply retention only"))
    pr.add_argument("--dry-run", action="store_true")
    pr.add_argument("--delete-unverified", action="store_true",
                    help="also delete data files without a valid manifest (kept by default)")
    pr.set_defaults(func=cmd_prune)
    rt = with_token(sub.add_parser("restore-test", help="restore into scratch, compare, drop"))
    rt.add_argument("ref", nargs="?")
    rt.set_defaults(func=cmd_restore_test)
    r = with_token(sub.add_parser("restore", help="restore a backup into a scratch database"))
    r.add_argument("ref", nargs="?")
    r.add_argument("--into-scratch", dest="scratch", metavar="NAME", nargs="?", const=None)
    r.add_argument("--safety-backup", action="store_true",
                   help="take a safety backup of the live database while restoring "
                        "(needs a lock token, or --swap)")
    r.add_argument("--swap", action="store_true",
                   help="then stop the app services, swap the scratch database in and "
                        "start them again, all in this process")
    r.add_argument("--keep-old", type=int, default=1, help="old databases to keep (--swap)")
    r.add_argument("--result-file", metavar="PATH",
                   help="also write the JSON result to PATH (0600)")
    r.set_defaults(func=cmd_restore)
    s = with_token(sub.add_parser("swap", help="make the scratch database the live one"))
    s.add_argument("--scratch", metavar="NAME")
    s.add_argument("--keep-old", type=int, default=1, help="old databases to keep")
    s.add_argument("--rollback", action="store_true",
                   help="swap back a kept pre-restore database (<prefix>_old_*)")
    rc = sub.add_parser("recover", help="put right what a dead run left (services, "
                                        "scratch databases, state files)")
    rc.add_argument("--dry-run", action="store_true")
    rc.set_defaults(func=cmd_recover)
    s.set_defaults(func=cmd_swap)
    d = with_token(sub.add_parser("drop-old", help="drop old databases kept by swap"))
    d.add_argument("--keep", type=int, default=0)
    d.set_defaults(func=cmd_drop_old)
    of = sub.add_parser("offsite", help="encrypted copies off the host (restic): init, "
                                         "send, check, status, fetch")
    of.add_argument("action", choices=["init", "send", "check", "status", "fetch"])
    of.add_argument("--offsite-config", default=DEFAULT_OFFSITE_CONFIG)
    of.add_argument("--force", action="store_true",
                    help="send even when the newest verified backup is already copied")
    of.add_argument("--subset", help="check: share of the data to read back (e.g. 5%%)")
    of.add_argument("--target", help="fetch: directory to restore the newest copies into")
    of.add_argument("--from-host", help="fetch: whose copies (default: this host's)")
    of.add_argument("--from-repository", metavar="URL",
                    help="fetch: the repository holding them (default: this host's; "
                         "a standby names the primary's)")
    of.set_defaults(func=cmd_offsite)
    lk = sub.add_parser("lock", help="hold the host lock across a playbook")
    lk.add_argument("action", choices=["acquire", "release", "status"])
    lk.add_argument("--owner", default="playbook")
    lk.add_argument("--ttl", type=int, default=3600)
    lk.add_argument("--token", default=os.environ.get("BMOPS_LOCK_TOKEN"))
    lk.set_defaults(func=cmd_lock)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK

    def on_term(signum, _frame):
        raise ToolError(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    code = EXIT_OK
    try:
        cfg = load_config(args.config)
        if getattr(args, "container", None):
            cfg = {**cfg, "container": args.container, "exec_prefix": None}
        result = args.func(cfg, args)
    except ToolError as exc:
        log(f"ERROR: {exc}")
        payload = getattr(exc, "payload", {})
        result = {**payload, "ok": False, "error": str(exc), "exit_code": exc.code}
        code = exc.code
    except OSError as exc:
        log(f"ERROR: {exc}")
        result = {"ok": False, "error": str(exc), "exit_code": EXIT_FAIL}
        code = EXIT_FAIL
    text = json.dumps(result, indent=2) if code == EXIT_OK else json.dumps(result)
    if getattr(args, "result_file", None):
        write_atomic(args.result_file, text + "\n")
    print(text)
    return code
