# SPDX-License-Identifier: Apache-2.0
"""Off-host copies (issue 15), live: the converged app host and a second host of the
same platform as the backup repository (restic over SFTP, role backup_repository),
on one Docker network.

site.yml deploys both; every verified backup goes off the host encrypted; an
unreachable repository, a wrong key and a damaged repository are loud and lose
nothing.  The test drives every run itself (offsite_backup_cron_enabled: false),
so no scheduled run races it.

Last, the host-loss test adds a standby host (a third one, converged with site.yml)
and removes the primary, the shared stack host, with its volumes: this module runs
after every other module that uses that host (conftest.STACK_ORDER).
"""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import KEEP, STACK_HOST, Stack, docker, hosts, start_host, write_inventory_text

REPO = f"{STACK_HOST}-repo"
STANDBY = f"{STACK_HOST}-standby"
DOMAIN = "backup-mgmt.demo.test"  # bm_domain of the demo inventory
KEY = "offsite-test-key-7c1d2e9f04ab"  # the test's repository key (bm_offsite_password)
TOOL = "/usr/local/sbin/bmops-backup"
OFFSITE = f"{TOOL} offsite"
PROM = "/var/lib/prometheus/node-exporter/bmops_offsite.prom"
REPL_PASSWORD = "replication-test-pw-5e8a1c0b93"  # noqa: S105 - bm_db_replication_password
BARMAN = "runuser -u barman -- barman"
SLOT = f"barman_{STACK_HOST.replace('-', '_')}"
# Ten rows a second, each with its commit time, in the background on the app host
# (the killed-primary test here and bench/pitr.py's RPO).
DR_PROBE_TABLE = ("DROP TABLE IF EXISTS dr_probe; "
                  "CREATE TABLE dr_probe (seq bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
DR_PROBE_WRITER = ("cd /opt/backup-mgmt && (while :; do echo 'INSERT INTO dr_probe DEFAULT "
                   "VALUES;'; sleep 0.1; done | docker compose exec -T db psql -q -U postgres "
                   "-d backup_mgmt >/dev/null 2>&1 &) ")


def inventory_yml(app: str, repo: str, standby: str = "", pitr: bool = True) -> str:
    conn = ("          ansible_connection: community.docker.docker\n"
            "          ansible_python_interpreter: /usr/bin/python3\n")
    copies = ("          bm_offsite_enabled: true\n"
              f"          bm_offsite_password: {KEY}\n"
              "          offsite_backup_cron_enabled: false\n")
    # The primary also streams its WAL to Barman on the repository host (issue 16).
    # BmWalStreamDown after 1 minute instead of 5, so that the outage test sees it fire.
    pitr = (f"          bm_pitr_enabled: {str(pitr).lower()}\n"
            f"          bm_db_replication_password: {REPL_PASSWORD}\n"
            "          monitoring_wal_max_lag_minutes: 1\n")
    text = ("all:\n  children:\n    bm_app:\n      hosts:\n"
            f"        {app}:\n{conn}{copies}{pitr}")
    if standby:
        text += f"        {standby}:\n{conn}{copies}"
    text += f"    bm_backup_repository:\n      hosts:\n        {repo}:\n{conn}"
    if standby:
        text += f"    bm_standby:\n      hosts:\n        {standby}:\n"
    return text


def tool(st: Stack, args: str, check: bool = False) -> tuple[int, dict, str]:
    """Run bmops-backup ARGS on the app host: (exit code, JSON result, stderr)."""
    proc = docker("exec", st.host, "sh", "-c", f"{TOOL} {args}", check=check)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = {}
    return proc.returncode, result, proc.stderr


def repo_sh(script: str, check: bool = True):
    return docker("exec", REPO, "sh", "-ec", script, check=check)


def metric(st: Stack, name: str) -> float | None:
    text = st.sh(f"cat {PROM} 2>/dev/null || true").stdout
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def snapshots(st: Stack) -> list[dict]:
    rc, out, err = tool(st, "offsite status")
    assert rc == 0, err
    return out["snapshots"]


@pytest.fixture(scope="module")
def offsite(stack, it_network, tmp_path_factory):
    """The stack host plus a repository host, converged with site.yml (copies on)."""
    start_host(REPO, it_network)
    workdir = tmp_path_factory.mktemp("offsite")
    inventory = write_inventory_text(workdir / "inventory", inventory_yml(stack.host, REPO))
    st = Stack(stack.host, inventory, workdir)
    first = st.run("site")
    assert first.rc == 0, first.stdout[-4000:]
    yield st
    # Leave the shared stack host as the other modules expect it: no copies, no metrics.
    stack.sh("rm -f /etc/bmops/offsite.json /etc/cron.d/bmops-offsite "
             f"{PROM} /var/lib/bmops/backup-state/offsite.json", check=False)
    if not KEEP:
        hosts.down(REPO)


@pytest.fixture(scope="module")
def standby(offsite, it_network, tmp_path_factory):
    """A standby app host of the same platform, converged with site.yml (its SSH identity
    authorized on the repository host); the primary is still alive here."""
    start_host(STANDBY, it_network)
    workdir = tmp_path_factory.mktemp("standby")
    inventory = write_inventory_text(workdir / "inventory",
                                     inventory_yml(offsite.host, REPO, STANDBY))
    st = Stack(STANDBY, inventory, workdir)
    # --check on the fresh standby (no Docker, no restic yet) finishes and changes nothing.
    check = st.run("site", cmdline=f"--check --limit {STANDBY},{REPO}")
    assert check.rc == 0, check.stdout[-4000:]
    assert st.sh("test ! -e /etc/bmops/offsite.json && ! command -v restic",
                 check=False).returncode == 0, "--check changed the fresh standby"
    first = st.run("site", cmdline=f"--limit {STANDBY},{REPO}")
    assert first.rc == 0, first.stdout[-4000:]
    yield st
    if not KEEP:
        hosts.down(STANDBY)


def test_site_sets_up_both_hosts_then_changes_nothing(offsite):
    again = offsite.run("site")
    assert again.rc == 0, again.stdout[-3000:]
    assert again.changed_tasks() == [], again.changed_tasks()
    check = offsite.run("site", cmdline="--check")
    assert check.rc == 0 and check.changed_tasks() == [], check.changed_tasks()
    modes = offsite.sh("stat -c '%a %U %n' /etc/bmops/offsite /etc/bmops/offsite/password "
                       "/etc/bmops/offsite/id_ed25519 /etc/bmops/offsite.json").stdout
    assert modes.split("\n")[:4] == ["700 root /etc/bmops/offsite",
                                     "600 root /etc/bmops/offsite/password",
                                     "600 root /etc/bmops/offsite/id_ed25519",
                                     "600 root /etc/bmops/offsite.json"], modes
    keys = repo_sh("cat /srv/bmops-repo/.ssh/authorized_keys").stdout
    assert keys.startswith('restrict,command="/usr/lib/openssh/sftp-server" ssh-ed25519 '), keys
    # The key never rests on the repository host, and never in a job event.
    assert repo_sh(f"grep -rl {KEY} /srv /etc /root || true").stdout.strip() == ""
    for ev in again.events:
        assert KEY not in json.dumps(ev), ev.get("event_data", {}).get("task")


def test_a_verified_backup_goes_off_the_host_encrypted(offsite):
    run = offsite.run("backup_db")
    assert run.rc == 0, run.stdout[-3000:]
    backup_id = run.artifact_data["db_backup"]["id"]
    rc, status, err = tool(offsite, "offsite status")
    assert rc == 0, err
    assert status["newest_copied_id"] == backup_id and status["behind"] is False, status
    assert {t for s in status["snapshots"] for t in s["tags"]} == {"bmops-backups",
                                                                    "bmops-config"}
    assert metric(offsite, "bmops_offsite_last_run_success") == 1
    assert metric(offsite, "bmops_offsite_newest_backup_timestamp_seconds") > 0
    # Only ciphertext on the repository: no table name, no compose file in the clear.
    leaks = repo_sh(f"grep -rlE 'backup_jobs|services:|{KEY}' /srv/bmops-repo/{offsite.host}"
                    " || true").stdout.strip()
    assert leaks == "", leaks
    # And it comes back whole: the archive's sha256 is the manifest's; the config is there.
    offsite.sh("rm -rf /tmp/fetched")
    rc, _, err = tool(offsite, "offsite fetch --target /tmp/fetched")
    assert rc == 0, err
    manifest = json.loads(offsite.sh(f"cat /tmp/fetched/backup/db/{backup_id}.json").stdout)
    digest = offsite.sh(f"sha256sum /tmp/fetched/backup/db/{manifest['file']}").stdout.split()[0]
    assert digest == manifest["sha256"]
    offsite.sh("test -s /tmp/fetched/opt/backup-mgmt/compose.yaml && "
               "test -d /tmp/fetched/opt/backup-mgmt/secrets && "
               "test -s /tmp/fetched/etc/bmops/backup.json && "
               "test ! -e /tmp/fetched/etc/bmops/offsite && rm -rf /tmp/fetched")


def test_an_unreachable_repository_keeps_the_backup_and_the_next_run_catches_up(offsite):
    repo_sh("systemctl stop ssh.socket ssh.service 2>/dev/null || systemctl stop ssh")
    try:
        run = offsite.run("backup_db")
        assert run.rc != 0, "the failed copy must fail the job (loud)"
        failed = " ".join(json.dumps(t.get("res", {})) for t in run.failed_tasks())
        assert "cannot be reached" in failed, failed
        backup_id = run.artifact_data["db_backup"]["id"]
        rc, listing, _ = tool(offsite, "list")
        assert backup_id in [b["id"] for b in listing["backups"] if b["kind"] == "verified"]
        assert metric(offsite, "bmops_offsite_last_run_success") == 0
    finally:
        repo_sh("systemctl start ssh")
    rc, out, err = tool(offsite, "offsite send")
    assert rc == 0, err
    assert out["newest_id"] == backup_id and backup_id in out["copied_ids"], out
    assert metric(offsite, "bmops_offsite_last_run_success") == 1


def test_a_wrong_key_is_a_clear_error_and_deletes_nothing(offsite):
    before = snapshots(offsite)
    local = offsite.sh("ls /backup/db | sort").stdout
    offsite.sh("cp -p /etc/bmops/offsite/password /root/offsite-key.saved && "
               "printf 'not-the-key-0000000000' > /etc/bmops/offsite/password")
    try:
        rc, out, _ = tool(offsite, "offsite send --force")
        assert rc == 1, out
        assert "wrong key" in out["error"] and "Nothing was deleted" in out["error"], out
    finally:
        offsite.sh("cp -p /root/offsite-key.saved /etc/bmops/offsite/password && "
                   "rm -f /root/offsite-key.saved")
    assert snapshots(offsite) == before
    assert offsite.sh("ls /backup/db | sort").stdout == local


def test_the_integrity_check_reads_the_data_back_and_finds_damage(offsite):
    rc, out, err = tool(offsite, "offsite check --subset 100%")
    assert rc == 0, err
    assert metric(offsite, "bmops_offsite_last_check_success") == 1
    # Damage one data file on the repository host: the read-back check must say so.
    # (The file is put back afterwards: the host-loss test below restores from it.)
    repo_sh(f"f=$(find /srv/bmops-repo/{offsite.host}/data -type f | head -1) && "
            "cp -p \"$f\" /root/pack.saved && echo \"$f\" > /root/pack.path && "
            "printf 'XXXXXXXXXXXXXXXX' | dd of=\"$f\" bs=1 seek=64 conv=notrunc 2>/dev/null")
    try:
        rc, out, err = tool(offsite, "offsite check --subset 100%")
        assert rc == 1, out
        assert metric(offsite, "bmops_offsite_last_check_success") == 0
    finally:
        repo_sh('cp -p /root/pack.saved "$(cat /root/pack.path)" && rm /root/pack.*')
    rc, out, err = tool(offsite, "offsite check --subset 100%")
    assert rc == 0, (out, err)


def barman_failures(server: str) -> list[str]:
    """The FAILED lines of `barman check` but the minimum of base backups (one exists)."""
    out = repo_sh(f"{BARMAN} check {server}", check=False).stdout
    return [line.strip() for line in out.splitlines()
            if "FAILED" in line and "minimum redundancy" not in line]


def test_the_wal_streams_over_tls_to_the_repository_host_and_nowhere_else(offsite):
    """Issue 16 item 2: wal_level replica, a slot, TLS, pg_hba limited to the repository
    host, the replication password in a 0600 file only."""
    assert offsite.psql("SHOW wal_level") == "replica"
    stream = offsite.psql("SELECT r.state, s.ssl, r.usename FROM pg_stat_replication r "
                          "JOIN pg_stat_ssl s USING (pid) "
                          "WHERE r.application_name = 'barman_receive_wal'")
    assert stream == "streaming|t|barman", stream
    assert offsite.psql("SELECT active FROM pg_replication_slots "
                        f"WHERE slot_name = '{SLOT}'") == "t"
    assert offsite.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'barman'") == "f"
    # Its function grants are in the database postgres: the application database's
    # dumps, restored into fresh clusters without the role, carry none.
    assert offsite.psql("SELECT count(*) FROM pg_proc WHERE proacl::text ~ 'barman'") == "0"
    assert barman_failures(offsite.host) == []
    backups = repo_sh(f"{BARMAN} list-backups --minimal {offsite.host}").stdout.split()
    assert len(backups) >= 1, backups  # the first base backup, made by site.yml
    # Its end time reaches the app host's monitoring (item 4): the repository host
    # writes the status, the app host reads it over its SFTP login.
    status = f"/srv/bmops-repo/barman-status/{offsite.host}.status"
    assert repo_sh(f"stat -c '%a %U' {status}").stdout.strip() == "644 root"
    offsite.sh("systemctl start bmops-app-metrics.service")
    text = offsite.sh("cat /var/lib/prometheus/node-exporter/bmops_app.prom").stdout
    series = f'bmops_wal_base_backup_end_timestamp_seconds{{server="{offsite.host}"}} '
    ended = re.search(rf"^{re.escape(series)}(\d+)$", text, re.MULTILINE)
    assert ended and time.time() - 7200 < int(ended[1]) <= time.time(), text
    assert 'bmops_app_metrics_error{section="base_backup"} 0' in text, text
    assert repo_sh("stat -c '%a %U' /var/lib/barman/.pgpass").stdout.strip() == "600 barman"
    leaks = repo_sh(f"grep -rl {REPL_PASSWORD} /etc /srv /var/log /var/lib/barman "
                    "--exclude=.pgpass || true").stdout.strip()
    assert leaks == "", leaks
    assert REPL_PASSWORD not in offsite.compose("config").stdout
    # Without TLS, or from any other address (here the db container itself, through the
    # published port), pg_hba.conf turns the role away before any password is asked.
    conninfo = f"host={offsite.host} port=5433 user=barman dbname=backup_mgmt"
    plain = repo_sh(f"PGPASSWORD=not-it psql '{conninfo} sslmode=disable' -c 'SELECT 1'",
                    check=False)
    assert plain.returncode != 0 and "rejects connection" in plain.stderr, plain.stderr
    assert "no encryption" in plain.stderr, plain.stderr
    address = offsite.sh("hostname -i").stdout.split()[0]
    inside = offsite.compose("exec", "-T", "-e", "PGPASSWORD=not-it", "db", "psql",
                             f"host={address} port=5433 user=barman dbname=backup_mgmt "
                             "sslmode=require", "-c", "SELECT 1", check=False)
    assert inside.returncode != 0 and "rejects connection" in inside.stderr, inside.stderr


def test_restore_db_to_a_point_in_time_brings_back_exactly_the_rows_up_to_it(offsite):
    """Issue 16 items 3 and 5: a row a second carrying its insert time; restore_db.yml with
    restore_target_time T between two rows: exactly the rows up to T are live, none after,
    through the ordinary restore's guarantees (safety backup, swap, old database kept)."""
    offsite.psql("DROP TABLE IF EXISTS pitr_probe; "
                 "CREATE TABLE pitr_probe (seq int PRIMARY KEY, at timestamptz NOT NULL)")
    offsite.sh("cd /opt/backup-mgmt && for i in $(seq 1 20); do "
               "echo \"INSERT INTO pitr_probe VALUES ($i, clock_timestamp());\"; sleep 1; done"
               " | docker compose exec -T db psql -q -U postgres -d backup_mgmt")
    assert offsite.psql("SELECT count(*) FROM pitr_probe") == "20"
    # T in Tokyo time, as an operator in Japan would write it
    def between(seq: int) -> str:
        return offsite.psql(
            "SELECT to_char((a.at + (b.at - a.at) / 2) AT TIME ZONE 'Asia/Tokyo', "
            "'YYYY-MM-DD HH24:MI:SS.US') || '+09:00' FROM pitr_probe a "
            f"JOIN pitr_probe b ON b.seq = a.seq + 1 WHERE a.seq = {seq}")

    target, later = between(10), between(15)

    # The plan in check mode changes nothing; a time without its offset is refused.
    plan = offsite.run("restore_db", cmdline="--check",
                       extravars={"restore_target_time": target})
    assert plan.rc == 0 and plan.changed_tasks() == [], plan.changed_tasks()
    assert "barman restore --target-time" in plan.stdout
    bad = offsite.run("restore_db", extravars={"restore_target_time": target[:19],
                                               "restore_confirm": True})
    assert bad.rc != 0
    said = " ".join(json.dumps(t.get("res", {})) for t in bad.failed_tasks())
    assert "the offset" in said and "Nothing was stopped or changed" in said, said
    assert offsite.psql("SELECT count(*) FROM pitr_probe") == "20"

    run = offsite.run("restore_db", extravars={"restore_target_time": target,
                                               "restore_confirm": True})
    assert run.rc == 0, run.stdout[-4000:]
    report = run.artifact_data["db_restore"]
    pitr = report["point_in_time"]
    assert pitr["target_time"] == target and report["backup"]["id"] == pitr["backup_id"], report
    assert any("recovery stopping" in line for line in pitr["replay"]), pitr
    assert offsite.psql("SELECT count(*), min(seq), max(seq) FROM pitr_probe") == "10|1|10"
    assert offsite.ready_status() == 200
    # The database it replaced is kept, renamed; the scratch cluster and copies are gone.
    old = report["swap"]["old_database"]
    assert offsite.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{old}'") == "1"
    assert offsite.sh("docker ps -aq --filter name=backup-mgmt-pitr").stdout.strip() == ""
    offsite.sh("test ! -e /var/lib/bmops/pitr")
    repo_sh(f"test ! -e /srv/bmops-repo/pitr-{offsite.host} && "
            f"test ! -e /var/lib/barman/pitr-restore/{offsite.host}")
    for ev in run.events:
        assert REPL_PASSWORD not in json.dumps(ev), ev.get("event_data", {}).get("task")
    # The stream goes on from the restored database.
    assert barman_failures(offsite.host) == []

    # dr_drill.yml drills another point in time (15 rows) beside the live stack, which
    # keeps its 10 rows and keeps running.
    drill = offsite.run("dr_drill", extravars={"dr_target_time": later})
    assert drill.rc == 0, drill.stdout[-4000:]
    drilled = drill.artifact_data["bmops_dr_drill"]
    assert drilled["rto_ok"], drilled
    assert drilled["backup"]["id"] not in (pitr["backup_id"], ""), drilled  # its own recovery
    assert offsite.psql("SELECT count(*) FROM pitr_probe") == "10"
    assert offsite.ready_status() == 200


def wal_metrics(st: Stack) -> dict[str, float]:
    """Run bmops-app-metrics now (the timer's unit) and read the slot's WAL series."""
    st.sh("systemctl start bmops-app-metrics.service")
    text = st.sh("cat /var/lib/prometheus/node-exporter/bmops_app.prom").stdout
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        rf'^(bmops_wal_\w+){{slot="{SLOT}"}} (\S+)$', text, re.MULTILINE)}


def firing(st: Stack, alertname: str) -> list[dict]:
    alerts = json.loads(st.sh("curl -sf http://127.0.0.1:9090/api/v1/alerts").stdout)
    return [a for a in alerts["data"]["alerts"]
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def test_a_stopped_repository_host_loses_no_wal_and_the_stream_catches_up(offsite):
    """Issue 16 items 4 and 5: while the repository host is down the slot holds the WAL
    and BmWalStreamDown (P2) fires; once it is back (cron restarts pg_receivewal) the
    stream catches up past everything written."""
    docker("stop", "-t", "5", REPO)
    try:
        offsite.psql("CREATE TABLE IF NOT EXISTS outage_probe (n int); "
                     "INSERT INTO outage_probe SELECT generate_series(1, 200000)")
        written = offsite.psql("SELECT pg_current_wal_lsn()")
        held = offsite.psql("SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) "
                            f"FROM pg_replication_slots WHERE slot_name = '{SLOT}'")
        active, retained = held.split("|")
        assert active == "f" and float(retained) > 4_000_000, held
        metrics = wal_metrics(offsite)
        assert metrics["bmops_wal_slot_active"] == 0, metrics
        assert metrics["bmops_wal_slot_retained_bytes"] > 4_000_000, metrics
        assert metrics["bmops_wal_volume_free_bytes"] > metrics[
            "bmops_wal_slot_retained_bytes"], metrics
        # Prometheus beside the app: down for 1 minute (the inventory's limit) -> P2
        deadline = time.monotonic() + 180
        while not (alerts := firing(offsite, "BmWalStreamDown")):
            assert time.monotonic() < deadline, offsite.sh(
                "curl -s http://127.0.0.1:9090/api/v1/alerts").stdout[-2000:]
            time.sleep(10)
        assert alerts[0]["labels"]["severity"] == "P2", alerts
        assert alerts[0]["labels"]["slot"] == SLOT, alerts
        assert SLOT in alerts[0]["annotations"]["summary"], alerts
    finally:
        docker("start", REPO)
    deadline = time.monotonic() + 240
    caught_up = "f"
    while caught_up != "t":
        assert time.monotonic() < deadline, offsite.psql(
            f"SELECT * FROM pg_replication_slots WHERE slot_name = '{SLOT}'")
        time.sleep(5)
        caught_up = offsite.psql(
            f"SELECT write_lsn >= '{written}'::pg_lsn FROM pg_stat_replication "
            "WHERE application_name = 'barman_receive_wal'")
    assert barman_failures(offsite.host) == []
    metrics = wal_metrics(offsite)
    assert metrics["bmops_wal_slot_active"] == 1, metrics
    # at most the segment being written: pg_receivewal fsyncs at the end of a segment
    assert metrics["bmops_wal_slot_retained_bytes"] <= 17 * 2**20, metrics


def test_turning_pitr_off_drops_the_slot_and_postgres_comes_back_at_wal_level_minimal(
        offsite, tmp_path):
    """PostgreSQL refuses to start at wal_level minimal while a replication slot exists:
    turning bm_pitr_enabled off drops the slot first and closes the role's login."""
    inventory = write_inventory_text(tmp_path / "inventory",
                                     inventory_yml(offsite.host, REPO, pitr=False))
    off = Stack(offsite.host, inventory, tmp_path)
    run = off.run("site", cmdline=f"--limit {offsite.host}",
                  tags="app_stack_configure,app_stack_run")
    assert run.rc == 0, run.stdout[-4000:]
    assert off.psql("SHOW wal_level") == "minimal"
    assert off.psql("SELECT count(*) FROM pg_replication_slots") == "0"
    assert off.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'barman'") == "f"
    ports = off.sh("docker ps --filter label=com.docker.compose.service=db "
                   "--format '{{.Ports}}'").stdout
    assert "5432" in ports and "5433" not in ports, ports
    assert off.ready_status() == 200
    again = off.run("site", cmdline=f"--limit {offsite.host}",
                    tags="app_stack_configure,app_stack_run")
    assert again.rc == 0 and again.changed_tasks() == [], again.changed_tasks()
    assert off.sh("test -e /var/lib/bmops/wal-gap", check=False).returncode == 0

    # On again: the WAL since the last base backup has a gap, so a new base backup is
    # taken and the mark goes (the standby's recovery below needs the stream).
    before = len(repo_sh(f"{BARMAN} list-backups --minimal {offsite.host}").stdout.split())
    on = offsite.run("site", cmdline=f"--limit {offsite.host},{REPO}",
                     tags="app_stack_configure,app_stack_run,wal_archive")
    assert on.rc == 0, on.stdout[-4000:]
    assert offsite.psql("SHOW wal_level") == "replica"
    assert offsite.psql("SELECT count(*) FROM pg_stat_replication "
                        "WHERE application_name = 'barman_receive_wal'") == "1"
    after = len(repo_sh(f"{BARMAN} list-backups --minimal {offsite.host}").stdout.split())
    assert after == before + 1, (before, after)
    assert offsite.sh("test ! -e /var/lib/bmops/wal-gap", check=False).returncode == 0


def test_the_standby_comes_up_from_the_wal_or_the_copies_when_the_primary_is_lost(
        offsite, standby):
    """Issue 15 item 5 and issue 16 item 5: rows are written continuously (10 a second,
    each with its commit time); a backup is taken and copied off the host; the primary is
    removed with its volumes. dr_drill.yml brings the standby up from the primary's WAL
    on Barman (the default with PITR on) losing at most the last minute of rows, and from
    the off-host copies alone with every row committed before the backup."""
    offsite.psql(DR_PROBE_TABLE)
    offsite.sh(DR_PROBE_WRITER)
    deadline = time.monotonic() + 30
    while int(offsite.psql("SELECT count(*) FROM dr_probe") or 0) < 20:
        assert time.monotonic() < deadline, "the writer does not write"
        time.sleep(0.5)
    committed = int(offsite.psql("SELECT max(seq) FROM dr_probe"))
    rc, backup, err = tool(offsite, "backup")
    assert rc == 0, err
    rc, sent, err = tool(offsite, "offsite send")
    assert rc == 0 and sent["newest_id"] == backup["id"], (sent, err)
    later = int(offsite.psql("SELECT max(seq) FROM dr_probe"))
    assert later > committed, "rows kept coming during the backup"

    assert offsite.psql("SELECT count(*) FROM pg_stat_replication "
                        "WHERE application_name = 'barman_receive_wal'") == "1"
    time.sleep(3)
    killed_at = time.time()
    hosts.down(offsite.host)  # the primary and every volume it had: data, backups, config
    assert docker("inspect", offsite.host, check=False).returncode != 0

    # --check says what it would do and changes nothing; a wrong primary name is a clear
    # error that leaves the standby's own stack as it was.
    check = standby.run("dr_drill", cmdline=f"--check --limit {standby.host}")
    assert check.rc == 0 and check.changed_tasks() == [], check.changed_tasks()
    wrong = standby.run("dr_drill", cmdline=f"--limit {standby.host}",
                        extravars={"dr_standby_from_host": "no-such-host"})
    assert wrong.rc != 0
    failed = " ".join(json.dumps(t.get("res", {})) for t in wrong.failed_tasks())
    assert "no-such-host" in failed and "stack and database were not touched" in failed, failed
    assert standby.ready_status() == 200

    # From the WAL: Barman's archive and the segment it was still receiving.
    wal = standby.run("dr_drill", cmdline=f"--limit {standby.host}")
    assert wal.rc == 0, wal.stdout[-4000:]
    result = wal.artifact_data["bmops_dr_standby"]
    assert result["source"] == "wal" and result["primary"] == offsite.host, result
    newest = float(standby.psql("SELECT extract(epoch FROM max(at)) FROM dr_probe"))
    rpo = killed_at - newest
    assert rpo <= 60, f"the standby lost {rpo:.1f} s of rows"
    assert int(standby.psql("SELECT max(seq) FROM dr_probe")) > later, "WAL after the backup"
    assert result["rpo_ok"] and 0 <= result["rpo_seconds"] <= 120, result
    print(f"rpo_seconds: {rpo:.1f}")  # the figure for the note (pytest -s)
    assert "barman:" in result["repository"] and result["last_commit_utc"], result
    repo_sh(f"test ! -e /srv/bmops-repo/pitr-{offsite.host}")

    # From the off-host copies alone (issue 15): the nightly backup, copied.
    run = standby.run("dr_drill", cmdline=f"--limit {standby.host}",
                      extravars={"dr_standby_source": "copies"})
    assert run.rc == 0, run.stdout[-4000:]
    result = run.artifact_data["bmops_dr_standby"]
    assert result["primary"] == offsite.host and result["backup"]["id"] == backup["id"], result
    assert result["source"] == "copies", result
    assert result["rto_ok"] and result["rpo_ok"], result
    # Every row committed before the copied backup started is on the standby.
    restored = standby.psql(f"SELECT count(*) FROM dr_probe WHERE seq <= {committed}")
    assert int(restored) == committed, (restored, committed)
    # /health/ready through nginx on the standby (manual: curl -f https://<domain>/health/ready)
    code = standby.sh("curl -sk -o /dev/null -w '%{http_code}' --resolve "
                      f"{DOMAIN}:443:127.0.0.1 https://{DOMAIN}/health/ready").stdout
    assert code == "200", code
    report = json.loads(standby.sh("cat /var/lib/bmops/reports/dr-standby-latest.json").stdout)
    assert report["result"]["rto_seconds"] == result["rto_seconds"], report
    assert standby.sh("stat -c %a /var/lib/bmops/dr-fetch").stdout.strip() == "700"
    assert result["promoted"] is False

    # The failover: the same recovery, then the previous database is dropped and the new
    # primary's first backup is taken and copied off the host under its own name.
    promoted = standby.run("dr_drill", cmdline=f"--limit {standby.host}",
                           extravars={"dr_promote": True})
    assert promoted.rc == 0, promoted.stdout[-4000:]
    result = promoted.artifact_data["bmops_dr_standby"]
    assert result["promoted"] is True and result["first_backup"], result
    rc, status, err = tool(standby, "offsite status")
    assert rc == 0 and status["newest_copied_id"] == result["first_backup"], (status, err)
    assert standby.psql("SELECT count(*) FROM pg_database WHERE datname ~ '_old_'") == "0"
    restored = standby.psql(f"SELECT count(*) FROM dr_probe WHERE seq <= {committed}")
    assert int(restored) == committed, (restored, committed)
    assert "Point backup-mgmt.demo.test at" in promoted.stdout
    for ev in wal.events + run.events + promoted.events:
        text = json.dumps(ev)
        assert KEY not in text and REPL_PASSWORD not in text, ev.get("event_data", {}).get("task")
