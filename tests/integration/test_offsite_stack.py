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


def inventory_yml(app: str, repo: str, standby: str = "") -> str:
    conn = ("          ansible_connection: community.docker.docker\n"
            "          ansible_python_interpreter: /usr/bin/python3\n")
    copies = ("          bm_offsite_enabled: true\n"
              f"          bm_offsite_password: {KEY}\n"
              "          offsite_backup_cron_enabled: false\n")
    text = ("all:\n  children:\n    bm_app:\n      hosts:\n"
            f"        {app}:\n{conn}{copies}")
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


def test_the_standby_comes_up_from_the_off_host_copies_alone_when_the_primary_is_lost(
        offsite, standby):
    """Issue 15 item 5: rows are written continuously; a backup is taken and copied off
    the host; the primary is removed with its volumes; dr_drill.yml brings the standby
    up from the off-host copies alone, with every row committed before the backup."""
    offsite.psql("DROP TABLE IF EXISTS dr_probe; "
                 "CREATE TABLE dr_probe (seq bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
    offsite.sh("cd /opt/backup-mgmt && (while :; do echo 'INSERT INTO dr_probe DEFAULT VALUES;'; "
               "sleep 0.1; done | docker compose exec -T db psql -q -U postgres -d backup_mgmt "
               ">/dev/null 2>&1 &) ")
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

    run = standby.run("dr_drill", cmdline=f"--limit {standby.host}")
    assert run.rc == 0, run.stdout[-4000:]
    result = run.artifact_data["bmops_dr_standby"]
    assert result["primary"] == offsite.host and result["backup"]["id"] == backup["id"], result
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
    for ev in run.events + promoted.events:
        assert KEY not in json.dumps(ev), ev.get("event_data", {}).get("task")
