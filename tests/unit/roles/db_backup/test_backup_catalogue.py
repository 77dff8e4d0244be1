# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.catalogue: every file of the backup directory classified; ``list``."""

from __future__ import annotations

import gzip

from backup_harness import run, write_backup
from bmops_backup.catalogue import scan


def test_scan_classifies_every_file(tmp_path):
    write_backup(tmp_path, "20261101_030000")
    write_backup(tmp_path, "20261102_030000", size=10, manifest=False)
    write_backup(tmp_path, "20261103_030000", ext="sql.gz", manifest=False)
    write_backup(tmp_path, "20261104_030000")
    (tmp_path / "20261104_030000.dump.zst").write_bytes(b"short")  # size mismatch
    write_backup(tmp_path, "20261105_030000", verified=False)
    (tmp_path / "20261106_030000.json").write_text("{}")  # manifest without data
    (tmp_path / "20261107_030000.dump.zst.partial").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not ours")
    kinds = {e["id"]: e["kind"] for e in scan(str(tmp_path))}
    assert kinds == {
        "20261101_030000": "verified", "20261102_030000": "unverified",
        "20261103_030000": "legacy", "20261104_030000": "unverified",
        "20261105_030000": "unverified", "20261106_030000": "unverified",
        "20261107_030000": "partial",
    }


def test_legacy_is_listed_and_verifiable(env):
    d = env["dir"]
    dump = (b"COPY public.t (a) FROM stdin;\n1\n2\n\\.\n"
            b"--\n-- PostgreSQL database dump complete\n--\n")
    (d / "20260225_030000.sql.gz").write_bytes(gzip.compress(dump))
    rc, out, _ = run(env, "list")
    assert rc == 0 and out["backups"][0]["kind"] == "legacy" and out["verified_count"] == 0
    rc, out, _ = run(env, "verify", "20260225_030000.sql.gz")
    assert rc == 0 and out["verified"][0]["kind"] == "legacy"
    rc, out, _ = run(env, "check")  # default: newest *verified*; legacy never chosen
    assert rc == 1 and "no verified backup" in out["error"]
