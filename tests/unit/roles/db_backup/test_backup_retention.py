# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.retention: which backups to keep (a pure function tested with tables)
and the ``prune`` command."""

from __future__ import annotations

import os
import time

import pytest
from backup_harness import DAY, NOW, files, run, write_backup
from bmops_backup.retention import choose_retained


def b(bid, age_days, kind="verified", **extra):
    return {"id": bid, "kind": kind, "time": NOW - age_days * DAY, **extra}


def actions(decisions):
    return {d["id"]: d["action"] for d in decisions}


RETENTION_CASES = [
    ("no backups", [], 30, 3, False, {}),
    ("one very old verified is the only copy", [b("a", 400)], 30, 3, False, {"a": "keep"}),
    ("keep_min protects old ones", [b("a", 40), b("b", 50), b("c", 60), b("d", 70)],
     30, 3, False, {"a": "keep", "b": "keep", "c": "keep", "d": "delete"}),
    ("keep_days window", [b(f"d{i}", i) for i in range(0, 40, 5)], 30, 3, False,
     {f"d{i}": ("keep" if i <= 30 else "delete") for i in range(0, 40, 5)}),
    ("keep_min 0 deletes everything old", [b("a", 31), b("b", 1)], 30, 0, False,
     {"a": "delete", "b": "keep"}),
    ("unverified ones never count toward keep_min, and are kept",
     [b("u1", 2, "unverified"), b("u2", 3, "unverified"), b("v1", 40), b("v2", 41),
      b("v3", 42)],
     30, 2, False, {"u1": "keep", "u2": "keep", "v1": "keep", "v2": "keep", "v3": "delete"}),
    ("a file without a manifest is kept however old, whatever keep_min",
     [b("u", 400, "unverified")], 30, 0, False, {"u": "keep"}),
    ("what holds no data goes once old: partial files, manifests without data",
     [b("p", 0.5, "partial"), b("q", 2, "partial"), b("u", 5, "unverified"),
      b("m", 5, "unverified", orphan_manifest=True),
      b("m2", 0.5, "unverified", orphan_manifest=True)], 30, 3, False,
     {"p": "keep", "q": "delete", "u": "keep", "m": "delete", "m2": "keep"}),
    ("tagged verified backups (safety, manual) count toward keep_min",
     [b("safety", 35, tag="safety"), b("a", 40), b("b", 41)], 30, 2, False,
     {"safety": "keep", "a": "keep", "b": "delete"}),
    ("clock skew: future-dated kept, not counted",
     [b("future", -10), b("a", 40), b("b", 41), b("c", 42), b("d", 43)], 30, 3, False,
     {"future": "keep", "a": "keep", "b": "keep", "c": "keep", "d": "delete"}),
    ("legacy never counted, never auto-deleted by default",
     [b("L", 400, "legacy"), b("a", 40), b("b", 41)], 30, 1, False,
     {"L": "keep", "a": "keep", "b": "delete"}),
    ("legacy deleted only with prune_legacy and older than keep_days",
     [b("L1", 400, "legacy"), b("L2", 10, "legacy"), b("v1", 1), b("v2", 2), b("v3", 3)],
     30, 3, True, {"L1": "delete", "L2": "keep", "v1": "keep", "v2": "keep", "v3": "keep"}),
    ("legacy never goes while fewer than keep_min verified backups exist (the only copy)",
     [b("L1", 400, "legacy"), b("v1", 1), b("v2", 2)], 30, 3, True,
     {"L1": "keep", "v1": "keep", "v2": "keep"}),
    ("legacy with no verified backup at all stays, even with keep_min 0",
     [b("L1", 400, "legacy")], 30, 0, True, {"L1": "keep"}),
]


@pytest.mark.parametrize("name,backups,keep_days,keep_min,prune_legacy,expected",
                         RETENTION_CASES, ids=[c[0] for c in RETENTION_CASES])
def test_choose_retained(name, backups, keep_days, keep_min, prune_legacy, expected):
    decisions = choose_retained(backups, NOW, keep_days, keep_min, prune_legacy)
    assert actions(decisions) == expected


@pytest.mark.parametrize("age_days,expected", [(0.5, "keep"), (2, "delete")])
def test_unverified_deleted_only_when_asked_and_old(age_days, expected):
    decisions = choose_retained([b("u", age_days, "unverified")], NOW, 30, 3,
                                delete_unverified=True)
    assert actions(decisions) == {"u": expected}


def test_future_dated_is_flagged_and_newest_first():
    decisions = choose_retained([b("a", 1), b("f", -2)], NOW, 30, 3)
    assert [d["id"] for d in decisions] == ["f", "a"]
    assert decisions[0]["future"] and not decisions[1]["future"]


def test_small_skew_is_tolerated():
    decisions = choose_retained([{"id": "a", "kind": "verified", "time": NOW + 60}],
                                NOW, 30, 1)
    assert decisions[0]["future"] is False


def test_prune_removes_old_partials_and_orphans_but_not_legacy(env):
    d = env["dir"]
    old = time.time() - 3 * DAY
    write_backup(d, "20200101_000000", ext="sql.gz", manifest=False)
    (d / "20200102_000000.sql.gz.partial").write_bytes(b"x")
    (d / "20200103_000000.json").write_text("{}")
    for p in d.iterdir():
        os.utime(p, (old, old))
    rc, _out, _ = run(env, "prune")
    assert rc == 0
    assert files(d) == ["20200101_000000.sql.gz"]


def test_prune_keeps_and_reports_a_dump_without_manifest_until_asked(env):
    d = env["dir"]
    old = time.time() - 40 * DAY
    write_backup(d, "20200104_000000", manifest=False)
    for p in d.iterdir():
        os.utime(p, (old, old))
    before = files(d)
    rc, out, _ = run(env, "prune")
    assert rc == 0 and files(d) == before
    assert out["kept_unverified"] == ["20200104_000000"]
    rc, out, _ = run(env, "prune", "--delete-unverified")
    assert rc == 0 and files(d) == [] and out["deleted"] == ["20200104_000000"]
