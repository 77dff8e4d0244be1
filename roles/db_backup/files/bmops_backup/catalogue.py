# SPDX-License-Identifier: Apache-2.0
"""What is in the backup directory: every file classified as verified, legacy,
unverified or partial; finding one backup; the ``list`` command."""

from __future__ import annotations

import os
import time

from .exceptions import EXIT_USAGE, ToolError
from .infofile import MANIFEST_RE, parse_name, read_manifest
from .utils import DAY, SKEW_TOLERANCE, iso, parse_iso


def scan(backup_dir: str) -> list[dict]:
    """Classify every file in the backup dir: verified, legacy, unverified, partial."""
    try:
        names = os.listdir(backup_dir)
    except FileNotFoundError:
        raise ToolError(f"backup dir {backup_dir} does not exist (the role creates it)",
                        EXIT_USAGE) from None
    entries = []
    manifests = {}
    for name in names:
        m = MANIFEST_RE.match(name)
        if m:
            manifests[name[:-5]] = os.path.join(backup_dir, name)
    seen = set()
    for name in sorted(names):
        info = parse_name(name)
        if not info:
            continue
        path = os.path.join(backup_dir, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        entry = {"id": info["id"], "file": name, "path": path, "format": info["format"],
                 "codec": info["codec"], "size_bytes": st.st_size, "mtime": st.st_mtime,
                 "time": st.st_mtime, "flags": []}
        if info["partial"]:
            entry.update(kind="partial")
            entries.append(entry)
            continue
        seen.add(info["id"])
        man = read_manifest(manifests[info["id"]]) if info["id"] in manifests else None
        if man is None:
            if info["ext"] == "sql.gz":
                # The manual's own file: restorable, never counted, age from mtime.
                entry.update(kind="legacy")
            else:
                entry.update(kind="unverified")
                entry["flags"].append("no manifest")
        elif (man.get("verified") is True and man.get("file") == name
              and man.get("size_bytes") == st.st_size and man.get("sha256")):
            entry.update(kind="verified", manifest=man, sha256=man["sha256"],
                         tag=man.get("tag"))
            try:
                entry["time"] = parse_iso(man["created_utc"])
            except (KeyError, ValueError):
                entry["flags"].append("manifest time unreadable; file time used")
        else:
            entry.update(kind="unverified")
            entry["flags"].append(f"manifest does not match the file (size {st.st_size}, "
                                  f"manifest says {man.get('size_bytes')})")
        entries.append(entry)
    for bid, mpath in manifests.items():
        if bid not in seen:  # manifest whose data file is gone
            st = os.stat(mpath)
            entries.append({"id": bid, "file": os.path.basename(mpath), "path": mpath,
                            "kind": "unverified", "time": st.st_mtime, "mtime": st.st_mtime,
                            "size_bytes": 0, "flags": ["manifest without data file"],
                            "orphan_manifest": True})
    entries.sort(key=lambda e: (e["time"], e["id"]), reverse=True)
    return entries


def public(entry: dict, now: float) -> dict:
    out = {k: v for k, v in entry.items() if k not in ("manifest", "mtime")}
    out["created_utc"] = iso(entry["time"])
    out["age_seconds"] = int(now - entry["time"])
    out["age_days"] = round((now - entry["time"]) / DAY, 2)
    if entry["time"] > now + SKEW_TOLERANCE:
        out["flags"] = entry["flags"] + ["future-dated"]
    return out


def find_backup(cfg: dict, ref: str | None, usable_only: bool = True) -> dict:
    """A backup by id, file name or path (legacy allowed); default: the newest verified
    backup without a tag (the scheduled cron job's, or backup_db.yml's): a tagged one
    (a restore's safety backup, a test's) is what an operator means only by its id.
    ``chosen`` in the result says why this one."""
    entries = scan(cfg["backup_dir"])
    if ref:
        if os.sep in ref:
            ref = os.path.basename(ref)
        for e in entries:
            if ref in (e["id"], e["file"]) and not e.get("orphan_manifest"):
                if usable_only and e["kind"] in ("partial", "unverified"):
                    raise ToolError(f"{ref} is {e['kind']} ({', '.join(e['flags']) or 'partial'})"
                                    ": not restorable")
                e["chosen"] = f"asked for by id ({ref})"
                return e
        raise ToolError(f"backup {ref} not found in {cfg['backup_dir']}")
    skipped = []
    for e in entries:
        if e["kind"] == "verified" and e["time"] <= time.time() + SKEW_TOLERANCE:
            if e.get("tag"):
                skipped.append(f"{e['id']} (tag {e['tag']})")
                continue
            e["chosen"] = ("newest verified scheduled backup (no tag)" + (
                f"; newer tagged ones skipped, restore them by id: {', '.join(skipped[:5])}"
                if skipped else ""))
            return e
    raise ToolError(f"no verified backup in {cfg['backup_dir']} without a tag (the scheduled ones)"
                    + (f"; tagged ones can be restored by id: {', '.join(skipped[:5])}"
                       if skipped else ""))


def cmd_list(cfg, args):
    now = time.time()
    entries = [public(e, now) for e in scan(cfg["backup_dir"])]
    if not args.all:
        entries = [e for e in entries if e["kind"] in ("verified", "legacy")]
    return {"ok": True, "backup_dir": cfg["backup_dir"], "backups": entries,
            "verified_count": sum(1 for e in entries if e["kind"] == "verified")}
