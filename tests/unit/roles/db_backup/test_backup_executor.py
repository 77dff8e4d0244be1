# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.backup_executor: the ``backup`` command, file level.

These tests use the ``sql_gz`` format, whose verification (gzip + COPY parsing) runs on
the host, and ``fakedb`` (conftest.py) for the db container; real PostgreSQL is covered
by tests/integration/test_backup_tool_live.py.
"""

from __future__ import annotations

import gzip
import json
import time

import pytest
from backup_harness import DAY, files, run
from bmops_backup.utils import iso


def test_backup_writes_verified_file_then_manifest_and_metrics(env):
    rc, out, err = run(env, "backup")
    assert rc == 0, err
    bid = out["id"]
    assert files(env["dir"]) == [f"{bid}.json", f"{bid}.sql.gz"]
    man = json.loads((env["dir"] / f"{bid}.json").read_text())
    assert man["verified"] is True and man["format"] == "sql_gz" and man["codec"] == "gzip"
    assert man["row_counts"] == {"public.t": 500, 'public."Odd ""Name"""': 2}
    assert man["server_version"] == "15.99" and man["size_bytes"] == out["size_bytes"]
    assert oct((env["dir"] / f"{bid}.sql.gz").stat().st_mode & 0o777) == "0o600"
    # the manual's format: plain gzip of the plain dump
    text = gzip.decompress((env["dir"] / f"{bid}.sql.gz").read_bytes()).decode()
    assert text.endswith("-- PostgreSQL database dump complete\n--\n")
    prom = (env["prom"] / "bmops_backup.prom").read_text()
    assert "bmops_backup_verified_count 1" in prom
    assert "bmops_backup_last_run_success 1" in prom
    rc, out, _ = run(env, "list")
    assert rc == 0 and [x["kind"] for x in out["backups"]] == ["verified"]


def test_two_backups_in_one_second_get_distinct_ids(env):
    ids = {run(env, "backup", "--no-prune")[1]["id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("mode,needle", [("fail", "pg_dump exited 1"),
                                         ("empty", "not a sane backup")])
def test_failed_dump_leaves_no_partial_no_manifest(env, monkeypatch, mode, needle):
    assert run(env, "backup")[0] == 0
    before = files(env["dir"])
    monkeypatch.setenv("FAKE_MODE", mode)
    rc, out, _err = run(env, "backup")
    assert rc == 1
    assert needle in out["error"]
    assert files(env["dir"]) == before  # nothing new, earlier backup intact
    prom = (env["prom"] / "bmops_backup.prom").read_text()
    assert "bmops_backup_last_run_success 0" in prom
    assert "bmops_backup_verified_count 1" in prom


def test_failed_backup_does_not_prune(env, monkeypatch):
    old = time.time() - 90 * DAY
    for _i in range(3):
        assert run(env, "backup", "--no-prune")[0] == 0
    for p in env["dir"].glob("*.json"):  # age the manifests' dates
        man = json.loads(p.read_text())
        man["created_utc"] = iso(old)
        p.write_text(json.dumps(man))
    monkeypatch.setenv("FAKE_MODE", "fail")
    assert run(env, "backup")[0] == 1
    assert len(list(env["dir"].glob("*.sql.gz"))) == 3
    monkeypatch.setenv("FAKE_MODE", "ok")
    rc, out, _ = run(env, "backup")
    assert rc == 0 and len(out["pruned"]) == 2  # keep_min 2: the new one + newest old one
    assert len(list(env["dir"].glob("*.sql.gz"))) == 2


def test_free_space_check_refuses_before_dumping(env):
    cfg = json.loads(env["cfg"].read_text())
    cfg["min_free_bytes"] = 1 << 60
    env["cfg"].write_text(json.dumps(cfg))
    rc, out, _ = run(env, "backup")
    assert rc == 1 and "not enough free space" in out["error"]
    assert files(env["dir"]) == []
