# SPDX-License-Identifier: Apache-2.0
"""Unit tests for roles/db_backup/files/bmops-backup.py (loaded by path).

Retention is a pure function tested with tables.  The file-level tests use the
``sql_gz`` format, whose verification (gzip + COPY parsing) runs on the host, and a
small stand-in for the db container (``fakedb``) that answers the two programs the
tool runs there (psql, pg_dump); real PostgreSQL is covered by
tests/integration/test_backup_tool_live.py.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import ROOT

TOOL = ROOT / "roles" / "db_backup" / "files" / "bmops-backup.py"
DAY = 86400
NOW = 1_795_000_000.0  # 2026-11-18


def load_tool():
    spec = importlib.util.spec_from_file_location("bmops_backup", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bt = load_tool()


def b(bid, age_days, kind="verified"):
    return {"id": bid, "kind": kind, "time": NOW - age_days * DAY}


def actions(decisions):
    return {d["id"]: d["action"] for d in decisions}


# ------------------------------------------------------------------ retention


RETENTION_CASES = [
    ("no backups", [], 30, 3, False, {}),
    ("one very old verified is the only copy", [b("a", 400)], 30, 3, False, {"a": "keep"}),
    ("keep_min protects old ones", [b("a", 40), b("b", 50), b("c", 60), b("d", 70)],
     30, 3, False, {"a": "keep", "b": "keep", "c": "keep", "d": "delete"}),
    ("keep_days window", [b(f"d{i}", i) for i in range(0, 40, 5)], 30, 3, False,
     {f"d{i}": ("keep" if i <= 30 else "delete") for i in range(0, 40, 5)}),
    ("keep_min 0 deletes everything old", [b("a", 31), b("b", 1)], 30, 0, False,
     {"a": "delete", "b": "keep"}),
    ("invalid ones never count toward keep_min",
     [b("u1", 2, "unverified"), b("u2", 3, "unverified"), b("v1", 40), b("v2", 41)],
     30, 2, False, {"u1": "delete", "u2": "delete", "v1": "keep", "v2": "keep"}),
    ("all invalid: old leftovers go, recent ones stay",
     [b("p", 0.5, "partial"), b("q", 2, "partial"), b("u", 5, "unverified")], 30, 3, False,
     {"p": "keep", "q": "delete", "u": "delete"}),
    ("clock skew: future-dated kept, not counted",
     [b("future", -10), b("a", 40), b("b", 41), b("c", 42), b("d", 43)], 30, 3, False,
     {"future": "keep", "a": "keep", "b": "keep", "c": "keep", "d": "delete"}),
    ("legacy never counted, never auto-deleted by default",
     [b("L", 400, "legacy"), b("a", 40), b("b", 41)], 30, 1, False,
     {"L": "keep", "a": "keep", "b": "delete"}),
    ("legacy deleted only with prune_legacy and older than keep_days",
     [b("L1", 400, "legacy"), b("L2", 10, "legacy")], 30, 3, True,
     {"L1": "delete", "L2": "keep"}),
]


@pytest.mark.parametrize("name,backups,keep_days,keep_min,prune_legacy,expected",
                         RETENTION_CASES, ids=[c[0] for c in RETENTION_CASES])
def test_choose_retained(name, backups, keep_days, keep_min, prune_legacy, expected):
    decisions = bt.choose_retained(backups, NOW, keep_days, keep_min, prune_legacy)
    assert actions(decisions) == expected


def test_future_dated_is_flagged_and_newest_first():
    decisions = bt.choose_retained([b("a", 1), b("f", -2)], NOW, 30, 3)
    assert [d["id"] for d in decisions] == ["f", "a"]
    assert decisions[0]["future"] and not decisions[1]["future"]


def test_small_skew_is_tolerated():
    decisions = bt.choose_retained([{"id": "a", "kind": "verified", "time": NOW + 60}],
                                   NOW, 30, 1)
    assert decisions[0]["future"] is False


# ----------------------------------------------------------------------- names


@pytest.mark.parametrize("name,expected", [
    ("20260225_030000.sql.gz", {"id": "20260225_030000", "format": "sql_gz", "partial": False}),
    ("20260225_030000_2.dump.zst", {"id": "20260225_030000_2", "codec": "zstd"}),
    ("20260225_030000.dump.gz.partial", {"format": "custom", "codec": "gzip", "partial": True}),
    ("20260225_030000.json", None),
    ("backup.sql.gz", None),
    ("20260225_0300.sql.gz", None),
])
def test_parse_name(name, expected):
    got = bt.parse_name(name)
    if expected is None:
        assert got is None
    else:
        assert {k: got[k] for k in expected} == expected


def test_name_time_is_utc():
    assert bt.parse_name("20260225_030000.sql.gz")["name_time"] == 1771988400.0


# ------------------------------------------------------------- file-level set-up


FAKEDB = textwrap.dedent('''\
    #!/usr/bin/env python3
    # Stand-in for `docker compose exec -T db`: answers psql and pg_dump.
    import os, sys
    args = sys.argv[1:]
    mode = os.environ.get("FAKE_MODE", "ok")
    if args[0] == "psql":
        sys.stdin.read()
        print("15.99\\t1000")
    elif args[0] == "pg_dump":
        if mode == "empty":
            sys.exit(0)
        out = sys.stdout
        out.write("--\\n-- PostgreSQL database dump\\n--\\n")
        out.write("COPY public.t (a) FROM stdin;\\n")
        for i in range(int(os.environ.get("FAKE_ROWS", "500"))):
            out.write(f"row {i}\\n")
            if mode == "fail" and i == 100:
                out.flush()
                sys.stderr.write("pg_dump: error: connection lost\\n")
                sys.exit(1)
        out.write("\\\\.\\n\\n")
        out.write('COPY public."Odd ""Name""" (b) FROM stdin;\\n1\\n2\\n\\\\.\\n')
        out.write("--\\n-- PostgreSQL database dump complete\\n--\\n")
    else:
        sys.exit(99)
''')


@pytest.fixture
def env(tmp_path, monkeypatch):
    fake = tmp_path / "fakedb"
    fake.write_text(FAKEDB)
    fake.chmod(0o755)
    bdir = tmp_path / "backup"
    bdir.mkdir(mode=0o700)
    prom = tmp_path / "prom"
    prom.mkdir()
    cfg = {"exec_prefix": [sys.executable, str(fake)], "container_password_env": "",
           "backup_dir": str(bdir), "lock_file": str(tmp_path / "lock"),
           "textfile_dir": str(prom), "format": "sql_gz", "min_free_bytes": 0,
           "keep_days": 30, "keep_min": 2}
    path = tmp_path / "backup.json"
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    monkeypatch.setenv("FAKE_MODE", "ok")
    return {"cfg": path, "dir": bdir, "prom": prom, "tmp": tmp_path}


def run(env, *args):
    """Run the tool as cron does; return (rc, parsed stdout, stderr)."""
    res = subprocess.run([sys.executable, str(TOOL), "--config", str(env["cfg"]), *args],
                         capture_output=True, text=True, check=False, env=os.environ)
    try:
        out = json.loads(res.stdout)
    except ValueError:
        out = res.stdout
    return res.returncode, out, res.stderr


def files(d):
    return sorted(p.name for p in Path(d).iterdir())


# ---------------------------------------------------------------- backup + verify


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


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_verify_detects_damage(env, damage):
    rc, out, _ = run(env, "backup")
    assert rc == 0
    path = Path(out["path"])
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[: len(data) - 20]
    path.write_bytes(bytes(data))
    rc, res, _err = run(env, "verify", out["id"])
    assert rc == 1
    assert res["ok"] is False and res["failed"] == [out["id"]]
    rc, res, _err = run(env, "check", out["id"])
    if damage == "flip":  # same size: only the checksum can tell
        assert rc == 1 and "sha256 does not match" in res["error"]
    # a size change is caught already by the listing: no longer "verified"
    rc, res, _ = run(env, "list")
    kinds = [x["kind"] for x in res["backups"]]
    assert kinds == (["verified"] if damage == "flip" else [])


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


def test_dump_without_end_marker_is_rejected(env, tmp_path):
    bdir = env["dir"]
    (bdir / "20260101_000000.sql.gz").write_bytes(gzip.compress(b"COPY x (a) FROM stdin;\n1\n"))
    rc, out, _ = run(env, "verify", "20260101_000000")
    assert rc == 1 and "incomplete" in out["verified"][0]["error"]


def test_failed_backup_does_not_prune(env, monkeypatch):
    old = time.time() - 90 * DAY
    for _i in range(3):
        assert run(env, "backup", "--no-prune")[0] == 0
    for p in env["dir"].glob("*.json"):  # age the manifests' dates
        man = json.loads(p.read_text())
        man["created_utc"] = bt.iso(old)
        p.write_text(json.dumps(man))
    monkeypatch.setenv("FAKE_MODE", "fail")
    assert run(env, "backup")[0] == 1
    assert len(list(env["dir"].glob("*.sql.gz"))) == 3
    monkeypatch.setenv("FAKE_MODE", "ok")
    rc, out, _ = run(env, "backup")
    assert rc == 0 and len(out["pruned"]) == 2  # keep_min 2: the new one + newest old one
    assert len(list(env["dir"].glob("*.sql.gz"))) == 2


# ------------------------------------------------------------------- scan/manifest


def write_backup(d, bid, ext="dump.zst", size=1000, manifest=True, **man):
    (d / f"{bid}.{ext}").write_bytes(b"x" * size)
    if manifest:
        data = {"id": bid, "file": f"{bid}.{ext}", "verified": True, "size_bytes": size,
                "sha256": "0" * 64, "created_utc": bt.iso(NOW), **man}
        (d / f"{bid}.json").write_text(json.dumps(data))


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
    kinds = {e["id"]: e["kind"] for e in bt.scan(str(tmp_path))}
    assert kinds == {
        "20261101_030000": "verified", "20261102_030000": "unverified",
        "20261103_030000": "legacy", "20261104_030000": "unverified",
        "20261105_030000": "unverified", "20261106_030000": "unverified",
        "20261107_030000": "partial",
    }


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


# -------------------------------------------------------------------------- lock


def test_second_run_fails_fast_while_lock_is_held(env):
    rc, held, err = run(env, "lock", "acquire", "--owner", "test", "--ttl", "30")
    assert rc == 0, err
    try:
        t0 = time.monotonic()
        rc, out, _ = run(env, "backup")
        assert rc == 3 and time.monotonic() - t0 < 5
        assert out["error"] == (f"another bmops backup/restore/maintenance run holds "
                                f"{env['tmp'] / 'lock'} (pid {held['pid']})")
        rc, out, _ = run(env, "backup", "--lock-token", "wrong")
        assert rc == 3
        rc, out, _ = run(env, "backup", "--lock-token", held["token"])
        assert rc == 0, out
    finally:
        rc, _, _ = run(env, "lock", "release", "--token", held["token"])
    assert rc == 0
    assert run(env, "backup")[0] == 0


def test_lock_is_exclusive_between_two_processes(tmp_path):
    lock = bt.Lock(str(tmp_path / "l"))
    code = (f"import importlib.util,sys,time;s=importlib.util.spec_from_file_location('t',"
            f"{str(TOOL)!r});m=importlib.util.module_from_spec(s);s.loader.exec_module(m);"
            f"l=m.Lock({str(tmp_path / 'l')!r});l.acquire('child');print('held',flush=True);"
            f"time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(bt.ToolError) as exc:
            lock.acquire("me")
        assert exc.value.code == 3 and f"(pid {child.pid})" in str(exc.value)
    finally:
        child.kill()
        child.wait()
    lock.acquire("me")  # released by the kernel when the holder died
    lock.release()


# ------------------------------------------------------------------------ config


def test_config_must_be_private(env):
    env["cfg"].chmod(0o644)
    rc, out, _ = run(env, "list")
    assert rc == 2 and "chmod 0600" in out["error"]


@pytest.mark.parametrize("patch,needle", [({"format": "tar"}, "format"),
                                          ({"bogus": 1}, "unknown keys"),
                                          ({"keep_min": -1}, "keep_min")])
def test_bad_config_is_a_usage_error(env, patch, needle):
    cfg = json.loads(env["cfg"].read_text())
    env["cfg"].write_text(json.dumps({**cfg, **patch}))
    rc, out, _ = run(env, "list")
    assert rc == 2 and needle in out["error"]


def test_missing_config_and_bad_usage(env, tmp_path):
    res = subprocess.run([sys.executable, str(TOOL), "--config", str(tmp_path / "nope"),
                          "list"], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "not found" in res.stdout
    assert bt.main(["no-such-command"]) == 2


def test_free_space_check_refuses_before_dumping(env):
    cfg = json.loads(env["cfg"].read_text())
    cfg["min_free_bytes"] = 1 << 60
    env["cfg"].write_text(json.dumps(cfg))
    rc, out, _ = run(env, "backup")
    assert rc == 1 and "not enough free space" in out["error"]
    assert files(env["dir"]) == []


def test_scratch_names_are_guarded():
    cfg = dict(bt.DEFAULTS)
    with pytest.raises(bt.ToolError):
        bt.check_scratch_name(cfg, "backup_mgmt")
    bt.check_scratch_name(cfg, "bmops_scratch_restore")


def test_copy_counter_handles_multiline_escapes():
    lines = [b"COPY public.t (a, b) FROM stdin;\n", b"1\tmulti\\nline\n", b"2\t\\N\n",
             b"\\.\n", b"-- PostgreSQL database dump complete\n"]
    info = bt.count_copy_rows(iter(lines))
    assert info["row_counts"] == {"public.t": 2} and info["complete"]
