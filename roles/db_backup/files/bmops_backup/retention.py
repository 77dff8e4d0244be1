# SPDX-License-Identifier: Apache-2.0
"""Retention: which backups to keep (a pure function) and the ``prune`` command."""

from __future__ import annotations

import os
import time

from .catalogue import scan
from .fs import fsync_dir
from .infofile import manifest_path
from .lockfile import LockSession
from .utils import DAY, SKEW_TOLERANCE, log


def choose_retained(backups, now, keep_days, keep_min, prune_legacy=False,
                    partial_max_age=DAY, delete_unverified=False):
    """Decide which backups to keep.  Pure function, no I/O.

    ``backups``: dicts with ``id``, ``kind`` (verified | legacy | unverified | partial)
    and ``time`` (epoch seconds, UTC).  Returns a list of decisions
    ``{"id", "kind", "action": "keep"|"delete", "reason", "future": bool}``, newest first.

    Rules: only verified backups count, whatever their tag (scheduled, safety,
    manual); the newest ``keep_min`` verified ones (not future-dated) are always
    kept; verified ones older than ``keep_days`` go; a future-dated backup (clock
    skew) is kept and flagged; legacy dumps are never counted and only deleted
    when ``prune_legacy``, older than ``keep_days`` and ``keep_min`` (at least one)
    verified backups exist. A data file without a
    valid manifest (``unverified``) may be the only copy of something: it is
    kept and reported, and deleted only when ``delete_unverified`` is asked for
    explicitly and it is older than ``partial_max_age``. What holds no data goes
    once older than ``partial_max_age``: ``.partial`` files (a run that never
    published) and manifests whose data file is gone.
    """
    horizon = now - keep_days * DAY
    ordered = sorted(backups, key=lambda b: (b["time"], b["id"]), reverse=True)
    # legacy dumps go only while keep_min verified backups remain: never the only copy
    verified = sum(1 for b in backups
                   if b["kind"] == "verified" and b["time"] <= now + SKEW_TOLERANCE)
    legacy_may_go = prune_legacy and verified >= max(int(keep_min), 1)
    decisions = []
    kept_recent = 0
    for b in ordered:
        future = b["time"] > now + SKEW_TOLERANCE
        kind = b["kind"]
        if future:
            action, reason = "keep", "future-dated (clock skew?): kept, not counted"
        elif kind == "verified":
            if kept_recent < keep_min:
                kept_recent += 1
                action, reason = "keep", f"among newest {keep_min} verified"
            elif b["time"] >= horizon:
                action, reason = "keep", f"within {keep_days} days"
            else:
                action, reason = "delete", f"verified, older than {keep_days} days"
        elif kind == "legacy":
            if legacy_may_go and b["time"] < horizon:
                action, reason = "delete", f"legacy, older than {keep_days} days"
            elif prune_legacy and b["time"] < horizon:
                action, reason = "keep", (f"legacy, older than {keep_days} days, kept: fewer "
                                          f"than {max(int(keep_min), 1)} verified backups")
            else:
                action, reason = "keep", "legacy dump (within retention, or prune_legacy off)"
        elif kind == "partial" or (kind == "unverified" and b.get("orphan_manifest")):
            what = "partial file" if kind == "partial" else "manifest without data file"
            if b["time"] < now - partial_max_age:
                action, reason = "delete", f"{what}, older than {partial_max_age:g} s"
            else:
                action, reason = "keep", f"{what}, recent (may be a run in progress)"
        elif kind == "unverified":
            if delete_unverified and b["time"] < now - partial_max_age:
                action, reason = "delete", "unverified, deleted as asked (--delete-unverified)"
            else:
                action, reason = "keep", ("unverified (no valid manifest): kept, may be the "
                                          "only copy; `prune --delete-unverified` removes it")
        else:
            action, reason = "keep", f"unknown kind {kind!r}"
        decisions.append({"id": b["id"], "kind": kind, "action": action,
                          "reason": reason, "future": future})
    return decisions


def do_prune(cfg: dict, now: float, dry_run: bool = False,
             delete_unverified: bool = False) -> dict:
    entries = scan(cfg["backup_dir"])
    decisions = choose_retained(entries, now, cfg["keep_days"], cfg["keep_min"],
                                cfg["prune_legacy"], cfg["partial_max_age_seconds"],
                                delete_unverified)
    by_id = {}
    for e in entries:
        by_id.setdefault(e["id"], []).append(e)
    deleted = []
    for d in decisions:
        if d["action"] != "delete":
            continue
        deleted.append(d["id"])
        if dry_run:
            continue
        for e in by_id[d["id"]]:
            if e["kind"] != d["kind"]:
                continue
            # Data file first, manifest last: a crash leaves an orphan manifest,
            # which the next run removes, never a "verified" file without data.
            if os.path.exists(e["path"]):
                os.unlink(e["path"])
            man = manifest_path(cfg["backup_dir"], e["id"])
            if e["kind"] in ("verified", "unverified") and os.path.exists(man):
                os.unlink(man)
        log(f"prune: deleted {d['id']} ({d['reason']})")
    if deleted and not dry_run:
        fsync_dir(cfg["backup_dir"])
    kept_unverified = [d["id"] for d in decisions
                       if d["action"] == "keep" and d["reason"].startswith("unverified")]
    for bid in kept_unverified:
        log(f"prune: kept {bid}: unverified (no valid manifest), may be the only copy; "
            "check it and remove it with `prune --delete-unverified`")
    return {"deleted": deleted, "dry_run": dry_run, "decisions": decisions,
            "future_dated": [d["id"] for d in decisions if d["future"]],
            "kept_unverified": kept_unverified}


def cmd_prune(cfg, args):
    with LockSession(cfg, "prune", args.lock_token):
        return {"ok": True, **do_prune(cfg, time.time(), dry_run=args.dry_run,
                                       delete_unverified=args.delete_unverified)}
