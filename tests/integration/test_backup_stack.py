# SPDX-License-Identifier: Apache-2.0
"""Backup and restore on the converged stack, through ansible-runner (as AWX runs them).

docs/architecture.md ("What a backup guarantees") and manual §4: backup_db round trip
with restore_db, the refusals
(no restore_confirm, --check, corrupt or truncated archives, the host lock), the
manual's own `.sql.gz`, pg_dump dying mid-dump, the cron entry really running the
tool, and no secret in any runner event.

Every test leaves the stack healthy (/health/ready 200, all five services running,
host lock free) and /backup/db holding only verified backups it can restore.
The probe table ``bk_probe`` is this module's own and is dropped at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import hosts

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOOL = "/usr/local/sbin/bmops-backup"
BACKUP_DIR = "/backup/db"
LOCK_FILE = "/run/bmops/bmops.lock"
PROJECT_DIR = "/opt/backup-mgmt"
SERVICES = ("backend", "celery", "celery-beat", "db", "redis")
RESTARTED = ("backend", "celery", "celery-beat")
CRON_FILE = "/etc/cron.d/bmops-backup"
PROM_FILE = "/var/lib/prometheus/node-exporter/bmops_backup.prom"


# ---------------------------------------------------------------- helpers


def docker(*args: str, check: bool = False, **kw) -> subprocess.CompletedProcess:
    return hosts.docker(*args, check=check, **kw)


def tool(stack, *args: str, env: dict | None = None) -> tuple[int, dict, str]:
    """Run bmops-backup on the host; (exit code, JSON stdout, stderr)."""
    envargs = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
    proc = docker("exec", *envargs, stack.host, TOOL, *args)
    try:
        out = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        out = {"raw": proc.stdout}
    return proc.returncode, out, proc.stderr


def service_states(stack) -> dict[str, str]:
    out = stack.compose("ps", "-a", "--format", "{{.Service}} {{.State}}", check=False).stdout
    return dict(line.split(None, 1) for line in out.splitlines() if line.strip())


def wait_healthy(stack, timeout: float = 180) -> None:
    """/health/ready 200 and every service running."""
    deadline = time.monotonic() + timeout
    while True:
        states = service_states(stack)
        status = stack.ready_status()
        if status == 200 and all(states.get(s) == "running" for s in SERVICES):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"stack not healthy after {timeout:.0f} s: ready={status} "
                                 f"services={states}")
        time.sleep(1)


def started_ats(stack) -> dict[str, str]:
    out = stack.sh(
        f"cd {PROJECT_DIR} && for s in {' '.join(SERVICES)}; do "
        "printf '%s ' $s; docker inspect -f '{{.State.StartedAt}}' $(docker compose ps -aq $s);"
        " done").stdout
    return dict(line.split(None, 1) for line in out.splitlines() if line.strip())


def probe(stack) -> list[str]:
    out = stack.psql("SELECT id || ':' || v FROM bk_probe ORDER BY id")
    return out.splitlines()


def databases(stack) -> set[str]:
    return set(stack.psql("SELECT datname FROM pg_database").splitlines())


def backup_files(stack) -> dict[str, tuple[int, str, str]]:
    """Every file in /backup/db: name -> (size, octal mode, sha256)."""
    out = stack.sh(
        "python3 - <<'EOF'\n"
        "import hashlib, json, os\n"
        f"d = {BACKUP_DIR!r}\n"
        "res = {}\n"
        "for n in sorted(os.listdir(d)):\n"
        "    p = os.path.join(d, n)\n"
        "    st = os.stat(p)\n"
        "    with open(p, 'rb') as fh:\n"
        "        h = hashlib.sha256(fh.read()).hexdigest()\n"
        "    res[n] = [st.st_size, oct(st.st_mode & 0o777)[2:], h]\n"
        "print(json.dumps(res))\n"
        "EOF").stdout
    return {k: tuple(v) for k, v in json.loads(out).items()}


def read_json(stack, path: str) -> dict:
    return json.loads(stack.sh(f"cat {path}").stdout)


def latest_verified(stack) -> dict:
    rc, out, err = tool(stack, "check")
    assert rc == 0, (out, err)
    return out


def lock_free(stack) -> bool:
    return tool(stack, "lock", "status")[1].get("free") is True


def wait_lock_free(stack, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not lock_free(stack):
        assert time.monotonic() < deadline, f"{LOCK_FILE} still held after {timeout:.0f} s"
        time.sleep(1)


def assert_ok(result) -> None:
    assert result.rc == 0, (result.failed_tasks(), result.stdout[-4000:])


def failed(result) -> list[tuple[str, str]]:
    """(task name, message incl. stdout/stderr) of every failed task."""
    out = []
    for ev in result.failed_tasks():
        res = ev.get("res") or {}
        text = " ".join(str(res.get(k, "")) for k in ("msg", "stdout", "stderr"))
        out.append((ev.get("task", ""), text))
    return out


def assert_nothing_touched(stack, before: dict, message: str) -> None:
    """Containers not restarted, live data, databases and backup files unchanged."""
    assert started_ats(stack) == before["started"], message
    assert probe(stack) == before["probe"], message
    assert databases(stack) == before["dbs"], message
    assert backup_files(stack) == before["files"], message


def snapshot(stack) -> dict:
    return {"started": started_ats(stack), "probe": probe(stack), "dbs": databases(stack),
            "files": backup_files(stack)}


def set_probe(stack, prefix: str, n: int = 50) -> list[str]:
    stack.psql(f"TRUNCATE bk_probe; INSERT INTO bk_probe "
               f"SELECT g, '{prefix}-' || g FROM generate_series(1, {n}) g")
    return probe(stack)


# ---------------------------------------------------------------- fixture


@pytest.fixture(scope="module")
def bk(stack):
    """The converged stack with the probe table; cleaned and healthy afterwards."""
    assert stack.sh(f"test -x {TOOL} && test -f /etc/bmops/backup.json",
                    check=False).returncode == 0, "site.yml did not install db_backup"
    wait_healthy(stack)
    wait_lock_free(stack)
    stack.psql("DROP TABLE IF EXISTS bk_probe; "
               "CREATE TABLE bk_probe(id int PRIMARY KEY, v text NOT NULL)")
    yield stack
    wait_lock_free(stack)
    wait_healthy(stack)
    stack.psql("DROP TABLE IF EXISTS bk_probe")


# ---------------------------------------------------------------- 1. round trip


def test_backup_then_restore_latest_round_trip(bk):
    seeded = set_probe(bk, "seed")
    assert len(seeded) == 50

    result = bk.run("backup_db")
    assert_ok(result)
    stats = result.artifact_data["db_backup"]
    assert set(stats) == {"id", "path", "sha256", "size_bytes", "duration_seconds"}
    bid, path = stats["id"], stats["path"]
    assert path == f"{BACKUP_DIR}/{bid}.dir.tar"
    assert len(stats["sha256"]) == 64
    assert int(stats["size_bytes"]) >= 512
    assert float(stats["duration_seconds"]) > 0

    # on the host: directory 0700, archive and manifest 0600, manifest matches the file
    assert bk.sh(f"stat -c '%a %U' {BACKUP_DIR}").stdout.split() == ["700", "root"]
    files = backup_files(bk)
    assert files[f"{bid}.dir.tar"][:2] == (int(stats["size_bytes"]), "600")
    assert files[f"{bid}.dir.tar"][2] == stats["sha256"]
    assert files[f"{bid}.json"][1] == "600"
    assert not [n for n in files if n.endswith(".partial")]
    manifest = read_json(bk, f"{BACKUP_DIR}/{bid}.json")
    assert manifest["verified"] is True
    assert manifest["sha256"] == stats["sha256"]
    assert manifest["size_bytes"] == int(stats["size_bytes"])
    assert manifest["database"] == "backup_mgmt"
    assert manifest["server_version"].startswith("15")
    assert manifest["row_counts"]["public.bk_probe"] == 50
    assert manifest["created_utc"].endswith("Z")

    # change the data, then restore the newest verified backup (no id given)
    bk.psql("DELETE FROM bk_probe WHERE id <= 10; UPDATE bk_probe SET v = 'changed' "
            "WHERE id = 20; INSERT INTO bk_probe VALUES (1000, 'after-backup')")
    assert probe(bk) != seeded
    before = started_ats(bk)
    restored = bk.run("restore_db", extravars={"restore_confirm": True})
    assert_ok(restored)
    report = restored.artifact_data["db_restore"]
    assert report["backup"]["id"] == bid
    assert report["restore"]["ok"] is True and report["restore"]["mismatches"] == {}
    assert report["swap"]["database"] == "backup_mgmt"
    assert report["swap"]["old_database"].startswith("bmops_scratch_old_")

    assert probe(bk) == seeded
    # the safety backup holds the state just before the restore (41 rows)
    safety = read_json(bk, f"{BACKUP_DIR}/{report['safety_backup']}.json")
    assert safety["tag"] == "safety"
    assert safety["row_counts"]["public.bk_probe"] == 41
    # the previous live database is kept renamed (keep_old 1)
    assert report["swap"]["old_database"] in databases(bk)
    wait_healthy(bk, timeout=60)
    after = started_ats(bk)
    for svc in RESTARTED:
        assert after[svc] != before[svc], f"{svc} was not stopped and started"
    assert after["db"] == before["db"]
    assert lock_free(bk)


# ---------------------------------------------------------------- 2. confirmation


def test_restore_without_confirm_refuses_and_stops_nothing(bk):
    before = snapshot(bk)
    result = bk.run("restore_db")
    assert result.rc != 0
    fails = failed(result)
    assert len(fails) == 1, fails
    task, msg = fails[0]
    assert task == "Refuse to restore without explicit confirmation"
    assert "restore_confirm" in msg
    assert_nothing_touched(bk, before, "a refused restore must not touch anything")
    assert "db_restore" not in result.artifact_data


# ---------------------------------------------------------------- 3. check mode


def test_restore_check_mode_prints_the_plan_and_changes_nothing(bk):
    latest = latest_verified(bk)
    before = snapshot(bk)
    result = bk.run("restore_db", extravars={"restore_confirm": True}, cmdline="--check")
    assert_ok(result)
    assert result.changed_tasks() == []
    assert f"Would restore {latest['file']}" in result.stdout
    assert "swap databases" in result.stdout
    assert_nothing_touched(bk, before, "--check must not change anything")
    assert lock_free(bk)


# ---------------------------------------------------------------- 4. legacy .sql.gz


def test_manual_legacy_sql_gz_restores(bk):
    legacy_rows = set_probe(bk, "legacy", 30)
    time.sleep(1.1)  # the manual's name has one-second resolution
    legacy = bk.sh(
        f"cd {PROJECT_DIR}\n"
        f"f={BACKUP_DIR}/$(date +%Y%m%d_%H%M%S).sql.gz\n"
        "docker compose exec -T db pg_dump -U postgres backup_mgmt | gzip > \"$f\"\n"
        "echo \"$f\"").stdout.strip()
    name = legacy.rsplit("/", 1)[1]
    try:
        assert "PostgreSQL database dump complete" in bk.sh(
            f"gzip -dc {legacy} | tail -n 5").stdout
        listed = {b["file"]: b for b in tool(bk, "list")[1]["backups"]}
        assert listed[name]["kind"] == "legacy"

        bk.psql("DELETE FROM bk_probe WHERE id % 2 = 0; "
                "INSERT INTO bk_probe VALUES (500, 'not-in-legacy')")
        result = bk.run("restore_db", extravars={"restore_confirm": True,
                                                 "restore_backup_id": name})
        assert_ok(result)
        report = result.artifact_data["db_restore"]
        assert report["backup"]["file"] == name
        assert report["backup"]["kind"] == "legacy"
        assert report["restore"]["ok"] is True
        assert report["restore"]["rows"] >= 30
        assert probe(bk) == legacy_rows
        wait_healthy(bk, timeout=60)
    finally:
        bk.sh(f"rm -f {legacy}")


# ---------------------------------------------------------------- 5. corrupt archives


def test_corrupt_or_truncated_archive_fails_before_anything_stops(bk):
    latest = latest_verified(bk)
    path, bid = latest["path"], latest["id"]
    keep = f"/root/bk-it-good-{latest['file']}"
    bk.sh(f"cp -p {path} {keep}")
    before = snapshot(bk)
    try:
        # one byte flipped in the middle; size unchanged, so only the checksum tells
        bk.sh("python3 - <<'EOF'\n"
              "import os\n"
              f"p = {path!r}\n"
              "off = os.path.getsize(p) // 2\n"
              "with open(p, 'r+b') as fh:\n"
              "    fh.seek(off); b = fh.read(1); fh.seek(off); fh.write(bytes([b[0] ^ 0xFF]))\n"
              "EOF")
        corrupted = backup_files(bk)
        before_flip = dict(before["files"])
        assert corrupted[latest["file"]][0] == before_flip[latest["file"]][0]
        assert corrupted[latest["file"]][2] != before_flip[latest["file"]][2]
        before["files"] = corrupted

        result = bk.run("restore_db", extravars={"restore_confirm": True})
        assert result.rc != 0
        fails = failed(result)
        assert [t for t, _ in fails] == ["Stop here if the backup is missing or corrupt"]
        msg = fails[0][1]
        assert "Nothing was stopped" in msg
        assert latest["file"] in msg and "sha256" in msg and "corrupt" in msg
        assert_nothing_touched(bk, before, "a corrupt archive must fail before any stop")
        assert lock_free(bk)
    finally:
        bk.sh(f"cp -p {keep} {path} && rm -f {keep}")
    rc, out, err = tool(bk, "check", bid)
    assert rc == 0, (out, err)

    # a truncated copy registered as a backup (manifest claims it verified)
    manifest = read_json(bk, f"{BACKUP_DIR}/{bid}.json")
    tid = "20261127_120000"
    ext = latest["file"].split(".", 1)[1]
    tfile = f"{tid}.{ext}"
    half = manifest["size_bytes"] // 2
    fake = {**manifest, "id": tid, "file": tfile, "created_utc": "2026-11-27T12:00:00Z",
            "tag": "bk-it-truncated"}
    bk.sh(f"head -c {half} {path} > {BACKUP_DIR}/{tfile} && chmod 600 {BACKUP_DIR}/{tfile}")
    try:
        # manifest copied as is: size differs -> not even a candidate
        bk.sh(f"cat > {BACKUP_DIR}/{tid}.json <<'EOF'\n{json.dumps(fake)}\nEOF")
        rc, out, _ = tool(bk, "check", tid)
        assert rc == 1 and "unverified" in out["error"] and "not restorable" in out["error"]
        assert f"manifest says {manifest['size_bytes']}" in out["error"]

        # manifest "fixed up" to the truncated size: the checksum catches it
        fake["size_bytes"] = half
        bk.sh(f"cat > {BACKUP_DIR}/{tid}.json <<'EOF'\n{json.dumps(fake)}\nEOF")
        before = snapshot(bk)
        result = bk.run("restore_db", extravars={"restore_confirm": True,
                                                 "restore_backup_id": tid})
        assert result.rc != 0
        fails = failed(result)
        assert [t for t, _ in fails] == ["Stop here if the backup is missing or corrupt"]
        assert tfile in fails[0][1] and "sha256" in fails[0][1]
        assert_nothing_touched(bk, before, "a truncated archive must fail before any stop")
    finally:
        bk.sh(f"rm -f {BACKUP_DIR}/{tfile} {BACKUP_DIR}/{tid}.json")
    assert latest_verified(bk)["id"] == bid
    wait_healthy(bk, timeout=30)


# ---------------------------------------------------------------- 6. pg_dump dies


def test_pg_dump_dying_mid_dump_leaves_no_file(bk):
    before_files = backup_files(bk)
    newest = latest_verified(bk)
    # an open transaction holding ACCESS EXCLUSIVE on bk_probe: pg_dump blocks
    # on its ACCESS SHARE lock, in the middle of its run, until the db goes away
    holder = subprocess.Popen(
        ["docker", "exec", bk.host, "docker", "compose", "--project-directory", PROJECT_DIR,
         "exec", "-T", "db", "psql", "-U", "postgres", "-d", "backup_mgmt", "-c",
         "BEGIN; LOCK TABLE bk_probe IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backup = None
    try:
        deadline = time.monotonic() + 30
        while bk.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                      "WHERE c.relname = 'bk_probe' AND l.mode = 'AccessExclusiveLock' "
                      "AND l.granted") != "1":
            assert time.monotonic() < deadline, "could not take the table lock"
            time.sleep(0.5)
        started = time.monotonic()
        backup = subprocess.Popen(["docker", "exec", bk.host, TOOL, "backup"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while True:
            waiting = bk.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                              "= 'pg_dump' AND wait_event_type = 'Lock'")
            partial = [n for n in backup_files(bk) if n.endswith(".partial")]
            if waiting == "1" and partial:
                break
            assert backup.poll() is None, backup.communicate()
            assert time.monotonic() < deadline, "pg_dump never started waiting"
            time.sleep(0.5)
        assert bk.sh(f"stat -c %a {BACKUP_DIR}/{partial[0]}").stdout.strip() == "600"

        bk.compose("stop", "db")
        out, err = backup.communicate(timeout=120)
        elapsed = time.monotonic() - started
        assert backup.returncode == 1, (out, err)
        result = json.loads(out)
        assert result["ok"] is False, result
        assert "pg_dump in the db container exited 1" in result["error"], result
        assert "removed" in err and partial[0] in err
        # no partial, no final file, no manifest: exactly the files from before
        assert backup_files(bk) == before_files
        prom = bk.sh(f"cat {PROM_FILE}").stdout
        assert "bmops_backup_last_run_success 0" in prom
        assert elapsed < 120
    finally:
        if backup is not None and backup.poll() is None:
            backup.kill()
        bk.compose("start", "db")
        holder.kill()
        holder.wait()
        wait_healthy(bk)
    # earlier backups intact and still restorable: the newest one verifies end to end
    rc, out, err = tool(bk, "verify", newest["id"])
    assert rc == 0, (out, err)
    assert lock_free(bk)


# ---------------------------------------------------------------- 6b. a dead controller

RUN_DIR = "/run/bmops"
PAUSE_AT, PAUSED = f"{RUN_DIR}/test-pause-at", f"{RUN_DIR}/test-paused"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def untagged_backup_of(stack, rows: list[str]) -> str:
    """A verified untagged backup holding exactly ``rows`` in bk_probe; its id."""
    assert probe(stack) == rows
    rc, out, err = tool(stack, "backup")
    assert rc == 0, (out, err)
    return out["id"]


def start_controller(stack, bid: str) -> subprocess.Popen:
    """restore_db.yml through ansible-playbook in its own process group (to kill -9)."""
    from bmops.cli import ensure_tools_on_path

    ensure_tools_on_path()
    return subprocess.Popen(
        [str(ANSIBLE_PLAYBOOK), "-i", str(stack.inventory), "playbooks/restore_db.yml",
         "-e", json.dumps({"restore_confirm": True, "restore_backup_id": bid})],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))


def wait_paused(stack, step: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while stack.sh(f"cat {PAUSED} 2>/dev/null || true").stdout.strip() != step:
        assert proc.poll() is None, f"the play ended (rc {proc.returncode}) before {step}"
        assert time.monotonic() < deadline, f"the restore never reached step {step}"
        time.sleep(0.5)


def scratch_dbs(stack) -> set[str]:
    return {d for d in databases(stack)
            if d.startswith("bmops_scratch_") and not d.startswith("bmops_scratch_old_")}


# What dies, and where: the controller (kill -9 of ansible-playbook and its workers:
# as an AWX cancel, a closed laptop or a lost SSH connection) at every step of the
# restore, and the host-side run itself (kill -9 of the unit's main process).
KILLS = [("controller", "restored"), ("controller", "stopped"), ("controller", "swap"),
         ("controller", "swapped"), ("restore-run", "swap")]


@pytest.mark.parametrize(("victim", "step"), KILLS, ids=[f"{v}-at-{s}" for v, s in KILLS])
def test_whatever_dies_the_app_comes_back_with_old_or_new_data(bk, victim, step):
    new = set_probe(bk, f"new-{step}", 25)
    bid = untagged_backup_of(bk, new)
    old = set_probe(bk, f"old-{step}", 20)
    bk.sh(f"mkdir -p -m 0700 {RUN_DIR} && echo {step} > {PAUSE_AT}")
    proc = start_controller(bk, bid)
    try:
        wait_paused(bk, step, proc)
        if victim == "controller":
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        else:
            bk.sh(f"systemctl kill --signal=KILL --kill-whom=main bmops-restore-{bid}.service")
    finally:
        bk.sh(f"rm -f {PAUSE_AT}")
        if proc.poll() is None and victim == "controller":
            os.killpg(proc.pid, signal.SIGKILL)
    # within a minute, the app is up on entirely the old or entirely the new data
    t0 = time.monotonic()
    wait_healthy(bk, timeout=60)
    wait_lock_free(bk, timeout=max(1.0, 60 - (time.monotonic() - t0)))
    data = probe(bk)
    # the controller's death changes nothing on the host: the run goes on to the end;
    # a run killed itself leaves the old database live (recover started the services)
    assert data == (new if victim == "controller" else old), data[:3]
    if victim == "restore-run":
        proc.wait(timeout=120)  # the play saw its unit fail, and says so
        assert proc.returncode != 0
        deadline = time.monotonic() + 30
        while scratch_dbs(bk):  # ExecStopPost's recover drops the scratch database
            assert time.monotonic() < deadline, scratch_dbs(bk)
            time.sleep(1)
    assert scratch_dbs(bk) == set()
    rc, rec, _ = tool(bk, "recover", "--dry-run")
    assert rc == 0 and rec["busy"] is False and not any(
        rec[k] for k in ("stopped_services", "closed_databases", "scratch_databases")), rec
    # an immediate rerun succeeds (the lock is free, nothing is left to refuse it)
    set_probe(bk, f"changed-{step}", 5)
    rerun = bk.run("restore_db", extravars={"restore_confirm": True, "restore_backup_id": bid})
    assert_ok(rerun)
    assert probe(bk) == new
    wait_healthy(bk, timeout=60)
    assert lock_free(bk)


# ---------------------------------------------------------------- 6c. database as it was

DB_PROPS_SQL = {  # each sorted: order inside pg's arrays is not part of the state
    "database": "SELECT pg_get_userbyid(datdba) || ' ' || datconnlimit FROM pg_database "
                "WHERE datname = 'backup_mgmt'",
    "acl": "SELECT coalesce(g.rolname, 'PUBLIC') || ' ' || a.privilege_type || ' ' || "
           "a.is_grantable FROM pg_database d, aclexplode(d.datacl) a LEFT JOIN pg_roles g "
           "ON g.oid = a.grantee WHERE d.datname = 'backup_mgmt' ORDER BY 1",
    "settings": "SELECT coalesce(r.rolname, '*') || ' ' || c FROM pg_db_role_setting s "
                "JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r "
                "ON r.oid = s.setrole, unnest(s.setconfig) c "
                "WHERE d.datname = 'backup_mgmt' ORDER BY 1",
    "table_grants": "SELECT grantee || ' ' || privilege_type FROM "
                    "information_schema.role_table_grants WHERE table_name = 'bk_probe' "
                    "ORDER BY 1",
}


def db_props(stack) -> dict[str, str]:
    return {k: stack.psql(sql) for k, sql in DB_PROPS_SQL.items()}


def test_restore_keeps_owner_settings_and_privileges_and_never_picks_its_safety_backup(bk):
    bk.psql("DO $$BEGIN "
            "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bk_owner') THEN "
            "CREATE ROLE bk_owner; END IF; "
            "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bk_reader') THEN "
            "CREATE ROLE bk_reader; END IF; END$$")
    for sql in ("ALTER DATABASE backup_mgmt SET work_mem = '7MB'",
                "ALTER DATABASE backup_mgmt SET search_path = \"$user\", public",
                "ALTER ROLE bk_reader IN DATABASE backup_mgmt SET statement_timeout = '5s'",
                "GRANT CONNECT ON DATABASE backup_mgmt TO bk_reader",
                "REVOKE TEMPORARY ON DATABASE backup_mgmt FROM PUBLIC",
                "GRANT SELECT ON bk_probe TO bk_reader",
                "ALTER DATABASE backup_mgmt CONNECTION LIMIT 200",
                "ALTER DATABASE backup_mgmt OWNER TO bk_owner"):
        bk.psql(sql)
    try:
        rows = set_probe(bk, "props", 12)
        before = db_props(bk)
        assert before["database"] == "bk_owner 200" and "* work_mem=7MB" in before["settings"]
        assert "bk_reader CONNECT false" in before["acl"]
        assert "bk_reader SELECT" in before["table_grants"]
        bid = untagged_backup_of(bk, rows)
        set_probe(bk, "later", 3)
        result = bk.run("restore_db", extravars={"restore_confirm": True})
        assert_ok(result)
        report = result.artifact_data["db_restore"]
        assert report["backup"]["id"] == bid
        assert probe(bk) == rows
        assert db_props(bk) == before

        # the restore took a safety backup (tagged): a second restore without an id
        # still means the newest scheduled backup, and the plan says why
        plan = bk.run("restore_db", extravars={"restore_confirm": True}, cmdline="--check")
        assert_ok(plan)
        assert f"Would restore {bid}." in plan.stdout
        assert f"{report['safety_backup']} (tag safety)" in plan.stdout
        assert latest_verified(bk)["id"] == bid
    finally:
        for sql in ("ALTER DATABASE backup_mgmt OWNER TO postgres",
                    "ALTER DATABASE backup_mgmt RESET ALL",
                    "ALTER ROLE bk_reader IN DATABASE backup_mgmt RESET ALL",
                    "ALTER DATABASE backup_mgmt CONNECTION LIMIT -1",
                    "GRANT TEMPORARY ON DATABASE backup_mgmt TO PUBLIC",
                    "REVOKE ALL ON DATABASE backup_mgmt FROM bk_reader"):
            bk.psql(sql)
    wait_healthy(bk, timeout=60)


def test_swap_refuses_a_scratch_database_no_restore_verified_and_the_lock_is_private(bk):
    bk.psql("SELECT 1")
    bk.compose("exec", "-T", "db", "psql", "-U", "postgres", "-c",
               "CREATE DATABASE bmops_scratch_restore")
    try:
        before = probe(bk)
        rc, out, _ = tool(bk, "swap")
        assert rc == 1 and "no restore verified it" in out["error"], out
        assert probe(bk) == before
    finally:
        bk.compose("exec", "-T", "db", "psql", "-U", "postgres", "-c",
                   "DROP DATABASE IF EXISTS bmops_scratch_restore")
    assert bk.sh(f"stat -c '%a %U' {RUN_DIR} {LOCK_FILE}").stdout.split() == [
        "700", "root", "600", "root"]
    assert "--wait 1800" in cron_line(bk)


# ---------------------------------------------------------------- 7. host lock


def test_second_run_fails_fast_naming_the_lock(bk):
    before = snapshot(bk)
    rc, held, err = tool(bk, "lock", "acquire", "--owner", "bk-it", "--ttl", "300")
    assert rc == 0, (held, err)
    try:
        t0 = time.monotonic()
        rc, out, err = tool(bk, "backup")
        assert time.monotonic() - t0 < 10
        assert rc == 3, (out, err)
        assert f"holds {LOCK_FILE} (pid {held['pid']})" in out["error"]

        result = bk.run("backup_db")
        assert result.rc != 0
        fails = failed(result)
        assert [t for t, _ in fails] == ["Fail with the tool's own message when the backup failed"]
        assert "exit 3" in fails[0][1] and f"holds {LOCK_FILE}" in fails[0][1]
        run_ev = [e["event_data"] for e in result.events if e.get("event") == "runner_on_ok"
                  and e["event_data"].get("task") == "Run a verified backup"]
        assert run_ev and run_ev[0]["res"]["rc"] == 3

        result = bk.run("restore_db", extravars={"restore_confirm": True})
        assert result.rc != 0
        fails = failed(result)
        # the lock comes from role host_lock (restore.yml: "Take the host lock for the
        # whole restore" includes its entry point acquire, whose check fails)
        assert [t for t, _ in fails] == ["Stop when another run holds the lock"]
        assert f"holds {LOCK_FILE}" in fails[0][1]
        assert_nothing_touched(bk, before, "a run that finds the lock held changes nothing")
    finally:
        rc, out, err = tool(bk, "lock", "release", env={"BMOPS_LOCK_TOKEN": held["token"]})
        assert rc == 0, (out, err)
    assert lock_free(bk)

    # two real backups started together: exactly one runs, the other exits 3 at once
    procs = [subprocess.Popen(["docker", "exec", bk.host, TOOL, "backup", "--tag", "bk-it"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    rcs = sorted(p.returncode for p in procs)
    assert rcs == [0, 3], outs
    loser = next(json.loads(o) for (o, _), p in zip(outs, procs, strict=True) if p.returncode == 3)
    assert f"holds {LOCK_FILE}" in loser["error"]
    assert not [n for n in backup_files(bk) if n.endswith(".partial")]
    assert lock_free(bk)


# ---------------------------------------------------------------- 8. cron


def cron_line(stack) -> str:
    lines = [ln for ln in stack.sh(f"cat {CRON_FILE}").stdout.splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 1, lines
    return lines[0]


def test_cron_entry_really_runs_the_tool(bk):
    assert bk.sh("systemctl is-active cron", check=False).stdout.strip() == "active"
    assert cron_line(bk).startswith("0 3 * * * root ")
    newest = latest_verified(bk)["id"]
    try:
        every_minute = bk.run("site", tags="db_backup_configure",
                              extravars={"db_backup_cron_minute": "*",
                                         "db_backup_cron_hour": "*"})
        assert_ok(every_minute)
        line = cron_line(bk)
        assert line.startswith("* * * * * root ")
        assert f"{TOOL} --config /etc/bmops/backup.json backup" in line
        deadline = time.monotonic() + 120  # next minute boundary + one backup, loaded CI
        while True:
            cur = latest_verified(bk)
            if cur["id"] > newest:
                break
            assert time.monotonic() < deadline, (
                "cron did not make a verified backup within 120 s:\n"
                + bk.sh("tail -n 20 /var/log/bmops/backup.log; journalctl -u cron -n 20 "
                        "--no-pager", check=False).stdout)
            time.sleep(3)
    finally:
        default = bk.run("site", tags="db_backup_configure")
        assert_ok(default)
    assert cron_line(bk).startswith("0 3 * * * root ")
    manifest = read_json(bk, f"{BACKUP_DIR}/{cur['id']}.json")
    assert manifest["verified"] is True and manifest["tag"] is None
    assert manifest["row_counts"]["public.bk_probe"] >= 1
    assert f"backup {cur['id']}: verified" in bk.sh("cat /var/log/bmops/backup.log").stdout
    # a run the cron may have started in the last minute finishes before we leave
    wait_lock_free(bk)
    # the cron job's runs are the scheduled ones the daily check reads back
    status = json.loads(bk.sh(f"{TOOL} --config /etc/bmops/backup.json status").stdout)
    assert status["last_scheduled_run"]["ok"] is True, status
    assert status["last_scheduled_run"]["id"] >= cur["id"]
    assert status["newest_verified"]["age_seconds"] < 600
    assert not [n for n in backup_files(bk) if n.endswith(".partial")]


# ---------------------------------------------------------------- 9. secrets


def test_no_secret_in_events_at_verbosity_3(bk):
    vault = yaml.safe_load((ROOT / "inventory" / "demo" / "group_vars" / "bm_app"
                            / "vault.yml").read_text(encoding="utf-8"))
    secrets = [vault["bm_db_password"], vault["bm_redis_password"]]
    assert all(len(s) >= 8 for s in secrets)
    result = bk.run("backup_db", verbosity=3)
    assert_ok(result)
    assert "<ESTABLISH" in result.stdout or "EXEC" in result.stdout  # really verbose
    for secret in secrets:
        assert secret not in result.stdout
        leaks = [e.get("event") for e in result.events if secret in json.dumps(e)]
        assert leaks == [], f"secret found in events {leaks}"


def test_site_replaces_the_manuals_backup_cron_entries(bk):
    """Issue 14 item 8: a host set up by the manual (§4.1) has
    `0 3 * * * /opt/scripts/backup-db.sh` in cron; site.yml replaces it, saying so."""
    bk.sh("mkdir -p /opt/scripts && printf '#!/bin/sh\\nexit 0\\n' > /opt/scripts/backup-db.sh"
          " && chmod 0755 /opt/scripts/backup-db.sh"
          " && echo '0 3 * * * root /opt/scripts/backup-db.sh' > /etc/cron.d/backup-db"
          # `|| true`: under sh -e a missing crontab would end the subshell early
          " && (crontab -l -u root 2>/dev/null || true; echo '0 3 * * * /opt/scripts/backup-db.sh';"
          " echo '5 4 * * * /bin/true keep-me') | crontab -u root -")
    try:
        result = bk.run("site", tags="db_backup_configure")
        assert_ok(result)
        assert "Migrated from the manual's backup" in result.stdout, result.stdout[-3000:]
        root = bk.sh("crontab -l -u root").stdout
        assert "/opt/scripts/backup-db.sh" not in root and "keep-me" in root
        assert bk.sh("cat /etc/cron.d/backup-db").stdout.startswith(
            "# replaced by bmops (role db_backup, bmops-backup runs instead): 0 3 * * *")
        again = bk.run("site", tags="db_backup_configure")
        assert_ok(again)
        assert "Migrated from the manual's backup" not in again.stdout
        assert again.changed_tasks() == [], again.stdout[-3000:]
    finally:
        bk.sh("rm -f /etc/cron.d/backup-db /opt/scripts/backup-db.sh; crontab -l -u root"
              " | grep -vF -e /opt/scripts/backup-db.sh -e keep-me | crontab -u root -",
              check=False)
