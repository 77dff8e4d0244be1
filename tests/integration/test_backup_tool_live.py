# SPDX-License-Identifier: Apache-2.0
"""bmops-backup against a real PostgreSQL 15 container (image bmops/postgres:15).

The tool's "run in the db container" prefix is pointed at ``docker exec -i <container>``
instead of ``docker compose exec -T db``; everything else is what cron runs. The tool
runs on this machine as the package it is (``python3 -m bmops_backup`` with
roles/db_backup/files on PYTHONPATH), as root, reaching the container through
/proc/<pid>/root.
Containers are named ``bmops-backup-*`` and removed at the end.
"""

from __future__ import annotations

import datetime
import gzip
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "roles" / "db_backup" / "files"
TOOL = [sys.executable, "-P", "-m", "bmops_backup"]
IMAGE = "bmops/postgres:15"
SEED = """
CREATE TABLE backup_jobs(id serial PRIMARY KEY, name text, status text,
  started_at timestamptz, finished_at timestamptz, bytes bigint, error text);
CREATE TABLE storage_targets(name text PRIMARY KEY, path text, capacity_bytes bigint,
  used_bytes bigint);
CREATE TABLE audit_logs(id bigserial PRIMARY KEY, created_at timestamptz DEFAULT now(),
  actor text, action text, detail jsonb);
CREATE TABLE "Odd Name"(x text);
INSERT INTO backup_jobs(name, status, started_at, bytes, error)
  SELECT 'job' || g, (ARRAY['success','failed','queued'])[1 + g % 3],
         now() - g * interval '1 min', g * 1000,
         CASE WHEN g % 7 = 0 THEN E'multi\\nline\\terror' END
  FROM generate_series(1, 20000) g;
INSERT INTO storage_targets VALUES ('a', '/a', 100, 10), ('b', '/b', 100, 20);
INSERT INTO audit_logs(actor, action, detail)
  SELECT 'u' || g, 'login', jsonb_build_object('g', g) FROM generate_series(1, 5000) g;
INSERT INTO "Odd Name" VALUES (E'a\\tb'), ('c');
"""
SEEDED = {"public.backup_jobs": 20000, "public.storage_targets": 2,
          "public.audit_logs": 5000, 'public."Odd Name"': 2}


def sh(*argv, check=True, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, **kw)


class Pg:
    def __init__(self, name: str):
        self.name = name

    def sql(self, query: str, db: str = "backup_mgmt") -> list[str]:
        res = sh("docker", "exec", "-i", self.name, "psql", "-X", "-q", "-At",
                 "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", db, input=query)
        return [line for line in res.stdout.splitlines() if line]

    def counts(self, db: str = "backup_mgmt") -> dict[str, int]:
        rows = self.sql(" UNION ALL ".join(
            f"SELECT '{t.replace(chr(39), chr(39) * 2)}' || '|' || count(*) FROM {t}"
            for t in SEEDED) + ";", db=db)
        return {r.split("|")[0]: int(r.split("|")[1]) for r in rows}

    def databases(self) -> set[str]:
        return set(self.sql("SELECT datname FROM pg_database;", db="postgres"))

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # TCP, not the socket: the entrypoint's temporary initdb server listens on
            # the socket only, and is stopped again right after (seen as a flaky SEED)
            res = sh("docker", "exec", self.name, "pg_isready", "-q", "-h", "127.0.0.1",
                     "-U", "postgres", check=False)
            if res.returncode == 0:
                try:
                    self.sql("SELECT 1;")
                    return
                except subprocess.CalledProcessError:
                    pass
            time.sleep(0.5)
        raise AssertionError(f"{self.name} not ready after {timeout} s: "
                             f"{sh('docker', 'logs', self.name, check=False).stderr[-2000:]}")


@pytest.fixture(scope="module")
def pg():
    if sh("docker", "image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} is missing: run `make images` first")
    name = f"bmops-backup-pg-{secrets.token_hex(3)}"
    sh("docker", "run", "-d", "--name", name, "--shm-size", "256m",
       "--tmpfs", "/tiny-spool:size=256k,mode=1777",  # a work directory too small
       "-e", "POSTGRES_PASSWORD=" + secrets.token_hex(8), "-e", "POSTGRES_DB=backup_mgmt",
       IMAGE)
    try:
        db = Pg(name)
        db.wait_ready()
        db.sql(SEED)
        yield db
    finally:
        sh("docker", "rm", "-f", "-v", name, check=False)


@pytest.fixture
def tool(pg, tmp_path):
    bdir = tmp_path / "backup"
    bdir.mkdir(mode=0o700)
    cfg = {"exec_prefix": ["docker", "exec", "-i", pg.name], "container": pg.name,
           "backup_dir": str(bdir),
           "lock_file": str(tmp_path / "lock"), "textfile_dir": str(tmp_path),
           "state_dir": str(tmp_path / "state"),
           "min_free_bytes": 0, "keep_days": 30, "keep_min": 3}
    path = tmp_path / "backup.json"

    def write(**over):
        path.write_text(json.dumps({**cfg, **over}))
        path.chmod(0o600)

    def run(*args, wait=True):
        argv = [*TOOL, "--config", str(path), *args]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(FILES), *filter(None, [os.environ.get("PYTHONPATH")])]))
        if not wait:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env)
        res = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        return res.returncode, json.loads(res.stdout), res.stderr

    write()
    run.dir = bdir
    run.configure = write
    return run


def unkeyed(path: Path) -> list[bytes]:
    return [b"\\restrict" if line.startswith((b"\\restrict ", b"\\unrestrict ")) else line
            for line in gzip.decompress(path.read_bytes()).splitlines()]


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def spool_leftovers(pg) -> list[str]:
    """Work directories of the directory format left in the db container's /tmp."""
    res = sh("docker", "exec", pg.name, "sh", "-c", "ls -a /tmp")
    return [n for n in res.stdout.split() if n.startswith("bmops-")]


@pytest.mark.parametrize("fmt, ext", [("directory", "dir.tar"), ("custom", "dump.zst")])
def test_round_trip_backup_change_restore_swap(pg, tool, fmt, ext):
    tool.configure(format=fmt)
    rc, out, err = tool("backup")
    assert rc == 0, err
    assert out["format"] == fmt and out["codec"] == "zstd"
    assert Path(out["path"]).name == f"{out['id']}.{ext}"
    assert spool_leftovers(pg) == []
    man = json.loads((tool.dir / f"{out['id']}.json").read_text())
    assert man["row_counts"] == SEEDED
    assert man["server_version"].startswith("15.")
    pg.sql("INSERT INTO storage_targets VALUES ('c', '/c', 1, 1); DELETE FROM audit_logs;")

    rc, res, err = tool("restore", out["id"], "--into-scratch")
    assert rc == 0, err
    assert res["match"] is True and res["rows"] == sum(SEEDED.values())
    assert pg.counts("bmops_scratch_restore") == SEEDED
    assert pg.counts()["public.storage_targets"] == 3  # live untouched so far

    rc, swap, err = tool("swap", "--keep-old", "1")
    assert rc == 0, err
    assert pg.counts() == SEEDED
    assert pg.counts(swap["old_database"])["public.audit_logs"] == 0
    rc, dropped, _ = tool("drop-old", "--keep", "0")
    assert rc == 0 and dropped["dropped"] == [swap["old_database"]]
    assert not {d for d in pg.databases() if d.startswith("bmops_scratch")}
    assert spool_leftovers(pg) == []


def test_work_directories_of_dead_runs_go_and_live_ones_stay(pg, tool):
    dead, live = "bmops-spool-999999-dead", f"bmops-spool-{os.getpid()}-live"
    sh("docker", "exec", pg.name, "mkdir", f"/tmp/{dead}", f"/tmp/{live}")
    try:
        rc, _, err = tool("backup")
        assert rc == 0, err
        assert spool_leftovers(pg) == [live]  # pytest is alive: maybe a run beside ours
    finally:
        sh("docker", "exec", pg.name, "rm", "-rf", f"/tmp/{dead}", f"/tmp/{live}")


def test_restore_test_reports_matching_counts(pg, tool):
    assert tool("backup")[0] == 0
    rc, res, err = tool("restore-test")
    assert rc == 0, err
    assert res["match"] and res["scratch_dropped"] and res["tables"] == len(SEEDED)
    assert "bmops_scratch_restore_test" not in pg.databases()


def test_restore_takes_a_safety_backup_beside_it_under_the_callers_lock(pg, tool, monkeypatch):
    rc, out, err = tool("backup")
    assert rc == 0, err
    # the safety backup rides a held lock: without its token the call is refused
    rc, res, _ = tool("restore", out["id"], "--into-scratch", "--safety-backup")
    assert rc == 2 and "lock token" in res["error"]
    rc, lock, err = tool("lock", "acquire", "--owner", "test", "--ttl", "300")
    assert rc == 0, err
    monkeypatch.setenv("BMOPS_LOCK_TOKEN", lock["token"])
    try:
        rc, res, err = tool("restore", out["id"], "--into-scratch", "--safety-backup")
        assert rc == 0, err
        assert res["match"] is True and pg.counts("bmops_scratch_restore") == SEEDED
        safety = res["safety_backup"]
        assert safety["ok"] and safety["tag"] == "safety" and safety["id"] != out["id"]
        man = json.loads((tool.dir / f"{safety['id']}.json").read_text())
        assert man["tag"] == "safety" and man["row_counts"] == SEEDED

        # a safety backup that fails (no room for it): the scratch database goes too,
        # so nothing can be swapped in without a safety copy of the live database
        tool.configure(min_free_bytes=2**60)
        rc, res, err = tool("restore", out["id"], "--into-scratch", "--safety-backup")
        assert rc == 1, err
        assert res["error"].startswith("safety backup of backup_mgmt failed: not enough free")
        assert "scratch database dropped, live database untouched" in res["error"]
        assert "bmops_scratch_restore" not in pg.databases()
        assert pg.counts() == SEEDED
    finally:
        assert tool("lock", "release")[0] == 0
    assert spool_leftovers(pg) == []


def test_sql_gz_is_the_manuals_file_and_legacy_dumps_restore(pg, tool):
    tool.configure(format="sql_gz", timezone="Asia/Tokyo")
    rc, out, err = tool("backup")
    assert rc == 0, err
    assert Path(out["path"]).name == f"{out['id']}.sql.gz"
    # named in local time as the manual does (20260225_030000 at 03:00 JST); the
    # manifest holds the instant (UTC) and the zone of the name
    created = datetime.datetime.strptime(out["created_utc"], "%Y-%m-%dT%H:%M:%SZ")
    jst = created + datetime.timedelta(hours=9)
    assert out["id"] == jst.strftime("%Y%m%d_%H%M%S")
    manifest = json.loads((tool.dir / f"{out['id']}.json").read_text())
    assert (manifest["name_zone"], manifest["name_utc_offset"]) == ("Asia/Tokyo", "+09:00")
    # exactly as the manual does it (§4.1), with pipefail so a failed dump is noticed
    stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(time.time() - 3600))
    legacy = tool.dir / f"{stamp}.sql.gz"
    sh("bash", "-c", f"set -o pipefail; docker exec {pg.name} pg_dump -U postgres backup_mgmt"
                     f" | gzip > {legacy}")
    # Same bytes, except the random key of pg_dump's \\restrict / \\unrestrict lines
    # (PostgreSQL 15.14+), which differs on every run.
    assert unkeyed(legacy) == unkeyed(Path(out["path"]))
    rc, listing, _ = tool("list")
    kinds = {b["id"]: b["kind"] for b in listing["backups"]}
    assert kinds == {out["id"]: "verified", stamp: "legacy"}

    rc, res, err = tool("restore", legacy.name, "--into-scratch")
    assert rc == 0, err
    assert res["match"] and pg.counts("bmops_scratch_restore") == pg.counts()
    assert tool("drop-old")[0] == 0
    pg.sql("DROP DATABASE bmops_scratch_restore;", db="postgres")


def test_corrupt_archive_is_detected_before_anything(pg, tool):
    rc, out, _ = tool("backup")
    assert rc == 0
    path = Path(out["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    before = pg.databases()
    rc, res, _ = tool("verify", out["id"])
    assert rc == 1 and res["failed"] == [out["id"]]
    rc, res, _ = tool("restore", out["id"], "--into-scratch")
    assert rc == 1 and "sha256 does not match" in res["error"]
    assert pg.databases() == before  # no scratch database was even created


def test_db_stopped_mid_dump_leaves_nothing_behind(pg, tool):
    rc, _first, _ = tool("backup")
    assert rc == 0
    before = {n: (tool.dir / n).read_bytes() for n in names(tool.dir)}
    # Hold a lock so pg_dump blocks mid-way, then stop the database under it.
    blocker = subprocess.Popen(
        ["docker", "exec", "-i", pg.name, "psql", "-U", "postgres", "-d", "backup_mgmt"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        text=True)
    blocker.stdin.write("BEGIN; LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE;\n")
    blocker.stdin.flush()
    proc = tool("backup", wait=False)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name"
                             " = 'pg_dump' AND wait_event_type = 'Lock';")
            if waiting == ["1"]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("pg_dump never blocked on the lock")
        assert any(n.endswith(".partial") for n in names(tool.dir))
        sh("docker", "stop", "-t", "2", pg.name)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        blocker.kill()
        sh("docker", "start", pg.name)
        pg.wait_ready()
    assert proc.returncode == 1, stderr
    assert json.loads(stdout)["ok"] is False
    after = names(tool.dir)
    assert not [n for n in after if n.endswith(".partial")]
    assert [n for n in after if not n.startswith("bmops_backup")] == sorted(before)
    for n, data in before.items():
        assert (tool.dir / n).read_bytes() == data
    prom = (tool.dir.parent / "bmops_backup.prom").read_text()
    assert "bmops_backup_last_run_success 0" in prom


@pytest.fixture
def tiny_disk(tool, tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir(mode=0o700)
    sh("mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mnt))
    try:
        yield mnt
    finally:
        sh("umount", str(mnt), check=False)


@pytest.fixture(scope="module")
def big_db(pg):
    pg.sql("CREATE DATABASE bmops_backup_big;", db="postgres")
    pg.sql("CREATE TABLE blob AS SELECT md5(random()::text) || md5(random()::text) AS v "
           "FROM generate_series(1, 60000);", db="bmops_backup_big")
    return "bmops_backup_big"


def test_disk_full_fails_cleanly(tool, tiny_disk, big_db):
    # Free-space check first: the estimate does not fit, nothing is written.
    tool.configure(backup_dir=str(tiny_disk), db_name=big_db, min_free_bytes=0)
    rc, out, _ = tool("backup")
    assert rc == 1 and "not enough free space" in out["error"]
    assert names(tiny_disk) == []
    # Estimate switched off: the disk fills mid-write; the tool must clean up.
    tool.configure(backup_dir=str(tiny_disk), db_name=big_db, min_free_bytes=0, size_ratio=0)
    rc, out, err = tool("backup")
    assert rc == 1, err
    assert "No space left" in out["error"] or "exited" in out["error"]
    assert names(tiny_disk) == []
    assert os.statvfs(tiny_disk).f_bfree * os.statvfs(tiny_disk).f_frsize > 500_000


def test_too_small_work_directory_in_the_container_fails_before_dumping(pg, tool):
    before = names(tool.dir)
    tool.configure(spool_dir="/tiny-spool")
    rc, out, _ = tool("backup")
    assert rc == 1
    assert "not enough free space for the dump's work directory" in out["error"]
    assert "/tiny-spool" in out["error"]
    assert names(tool.dir) == before  # no partial file, no manifest
    ls = sh("docker", "exec", pg.name, "ls", "-A", "/tiny-spool").stdout.split()
    assert ls == []  # its own work directory removed as well


def test_swap_takes_only_the_scratch_database_the_restore_verified(pg, tool):
    rc, out, err = tool("backup")
    assert rc == 0, err
    rc, res, err = tool("restore", out["id"], "--into-scratch")
    assert rc == 0, err
    # recreated behind the restore's back: same name, another database (OID)
    pg.sql("DROP DATABASE bmops_scratch_restore")
    pg.sql("CREATE DATABASE bmops_scratch_restore")
    rc, res, _ = tool("swap")
    assert rc == 1 and "not the database the restore" in res["error"], res
    assert pg.counts() == SEEDED
    pg.sql("DROP DATABASE bmops_scratch_restore")


def test_recover_drops_scratch_databases_keeps_the_old_ones_and_reopens_the_live_one(pg, tool):
    tool.configure(app_services=[])
    pg.sql("CREATE DATABASE bmops_scratch_restore")
    pg.sql("CREATE DATABASE bmops_scratch_old_20260101000000")
    pg.sql("ALTER DATABASE backup_mgmt ALLOW_CONNECTIONS false", db="postgres")
    try:
        rc, plan, err = tool("recover", "--dry-run")
        assert rc == 0, err
        assert plan["scratch_databases"] == ["bmops_scratch_restore"]
        assert plan["closed_databases"] == ["backup_mgmt"] and plan["changed"] is False
        rc, done, err = tool("recover")
        assert rc == 0 and done["changed"] is True, err
        dbs = pg.databases()
        assert "bmops_scratch_restore" not in dbs
        assert "bmops_scratch_old_20260101000000" in dbs
        assert pg.counts() == SEEDED  # reachable again
        assert tool("recover")[1]["changed"] is False
    finally:
        pg.sql("ALTER DATABASE backup_mgmt ALLOW_CONNECTIONS true", db="postgres")
        pg.sql("DROP DATABASE IF EXISTS bmops_scratch_old_20260101000000", db="postgres")
