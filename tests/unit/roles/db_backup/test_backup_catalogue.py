# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.catalogue: every file of the backup directory classified; ``list``."""

from __future__ import annotations

import gzip
import time

from backup_harness import run, write_backup
from bmops_backup.catalogue import find_backup, scan
from bmops_backup.config import load_config


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


def test_default_is_the_newest_untagged_backup_safety_only_by_id(env):
    assert run(env, "backup")[0] == 0
    time.sleep(1.1)
    rc, safety, _ = run(env, "backup", "--tag", "safety", "--no-prune")
    assert rc == 0
    cfg = load_config(str(env["cfg"]))
    chosen = find_backup(cfg, None)
    assert chosen["id"] != safety["id"] and chosen.get("tag") is None
    assert "newest verified scheduled backup" in chosen["chosen"]
    assert f"{safety['id']} (tag safety)" in chosen["chosen"]
    assert find_backup(cfg, safety["id"])["id"] == safety["id"]
    rc, out, _ = run(env, "check")
    assert rc == 0 and out["id"] == chosen["id"] and "skipped" in out["chosen"]


def test_backup_container_points_the_run_at_another_cluster(env, monkeypatch, capsys):
    """``backup --container NAME`` (role wal_archive: the recovered scratch cluster): the
    same configuration, but the dump reaches that container, not the stack's db."""
    from bmops_backup import cli

    seen = {}

    def fake_backup(cfg, args):
        seen.update(container=cfg["container"], exec_prefix=cfg["exec_prefix"],
                    backup_dir=cfg["backup_dir"], tag=args.tag)
        return {"ok": True}

    monkeypatch.setattr(cli, "cmd_backup", fake_backup)
    rc = cli.main(["--config", str(env["cfg"]), "backup", "--tag", "pitr",
                   "--container", "backup-mgmt-pitr"])
    assert rc == 0, capsys.readouterr()
    assert seen == {"container": "backup-mgmt-pitr", "exec_prefix": None,
                    "backup_dir": str(env["dir"]), "tag": "pitr"}
    seen.clear()
    assert cli.main(["--config", str(env["cfg"]), "backup"]) == 0
    assert seen["container"] is None and seen["exec_prefix"]  # the configured db
