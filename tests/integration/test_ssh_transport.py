# SPDX-License-Identifier: Apache-2.0
"""The transport real sites use (issue 18, first part): SSH as an admin account that
becomes root through sudo, on the shared converged stack host.

Two admins: ``admin`` whose sudo asks for a password (given the way AWX gives a
machine credential's become password: ansible-runner answers the BECOME prompt), and
``admin-np`` with NOPASSWD. The host key is in a known_hosts file the inventory names;
StrictHostKeyChecking stays on. Over SSH, a no-change ``site.yml`` changes nothing
(at -vvv, and the sudo password is in no event and no output), ``--check`` changes
nothing, the daily check runs as the NOPASSWD admin, and a backup is restored. The
opt-in Mitogen strategy passes the same no-change, no-password and check-mode runs.
"""

from __future__ import annotations

import json
import secrets

import pytest
import yaml
from conftest import run_playbook, write_inventory_text
from sshhost import admin_account, controller_key, enable_sshd, known_hosts_line, ssh_host_vars


@pytest.fixture(scope="module")
def ssh(stack, tmp_path_factory):
    """Inventories that reach the stack host over SSH as admin (sudo password) and
    admin-np (NOPASSWD)."""
    work = tmp_path_factory.mktemp("ssh")
    enable_sshd(stack.host)
    key = controller_key(work / "key", "bmops-ssh-test")
    pub = key.with_suffix(".pub").read_text().strip()
    password = "sudo-" + secrets.token_urlsafe(12)
    admin_account(stack.host, "admin", pub, password)
    admin_account(stack.host, "admin-np", pub, None)
    known = work / "known_hosts"
    known.write_text(known_hosts_line(stack.host) + "\n")
    inventories = {}
    for user in ("admin", "admin-np"):
        host_vars = ssh_host_vars(stack.host, user, key, known)
        inventories[user] = write_inventory_text(work / f"inventory-{user}", yaml.safe_dump(
            {"all": {"children": {"bm_app": {"hosts": {stack.host: host_vars}}}}}))
        # the stack's own host_vars (rotated passwords) stay the one source
        src = stack.inventory / "host_vars"
        if src.exists():
            (inventories[user] / "host_vars").symlink_to(src)
    return {"inventories": inventories, "password": password, "work": work}


def run_as(ssh, user, playbook, name, **kw):
    extra = {}
    if user == "admin":
        extra = {"cmdline": (kw.pop("cmdline", "") + " --ask-become-pass").strip(),
                 "passwords": {r"^BECOME password.*:\s*?$": ssh["password"]}}
    return run_playbook(playbook, ssh["inventories"][user], ssh["work"] / name, **kw, **extra)


def events_text(result) -> str:
    return "\n".join(json.dumps(e) for e in result.events)


def test_site_rerun_over_ssh_as_a_sudo_admin_changes_nothing_and_hides_the_password(ssh):
    result = run_as(ssh, "admin", "site", "site-admin", verbosity=3)
    assert result.rc == 0, result.stdout[-4000:]
    assert result.changed_tasks() == [], result.changed_tasks()
    # it went over SSH as admin and became root with sudo
    assert "ESTABLISH SSH CONNECTION FOR USER: admin" in result.stdout
    assert "sudo" in result.stdout and "BECOME-SUCCESS" in result.stdout
    # the sudo password reaches no job event and no output, even at -vvv
    assert ssh["password"] not in result.stdout
    assert ssh["password"] not in events_text(result)
    # ansible-runner's input (env/passwords, as AWX writes it) is the one place it is:
    # 0600; no artifact, event or output holds it
    answers = ssh["work"] / "site-admin" / "env" / "passwords"
    assert answers.stat().st_mode & 0o077 == 0, oct(answers.stat().st_mode)
    for path in (ssh["work"] / "site-admin").rglob("*"):
        if path.is_file() and path != answers:
            assert ssh["password"] not in path.read_text(errors="replace"), path


def test_check_mode_over_ssh_changes_nothing(ssh):
    result = run_as(ssh, "admin", "site", "site-admin-check", cmdline="--check")
    assert result.rc == 0, result.stdout[-4000:]
    assert result.changed_tasks() == [], result.changed_tasks()


def test_daily_check_over_ssh_as_a_nopasswd_admin(ssh, stack):
    result = run_as(ssh, "admin-np", "daily_check", "daily-admin-np")
    assert result.rc == 0, result.stdout[-4000:]
    summary = result.artifact_data["bmops_daily"]
    assert summary["status"] in ("ok", "warn") and summary["breaches"] == [], summary
    # the report was written by root (become), not by the admin account
    owner = stack.sh("stat -c %U /var/lib/bmops/reports/daily-latest.json").stdout.strip()
    assert owner == "root"


def test_backup_and_restore_over_ssh_as_the_sudo_admin(ssh, stack):
    """The manual's backup and a restore of it, over SSH as the sudo-password admin: the
    row written after the backup is gone, the app is ready again, no password shown."""
    stack.psql("DROP TABLE IF EXISTS ssh_probe; CREATE TABLE ssh_probe(v text); "
               "INSERT INTO ssh_probe VALUES ('before')")
    backup = run_as(ssh, "admin", "backup_db", "backup-admin")
    assert backup.rc == 0, backup.stdout[-4000:]
    bid = backup.artifact_data["db_backup"]["id"]
    stack.psql("INSERT INTO ssh_probe VALUES ('after')")
    restore = run_as(ssh, "admin", "restore_db", "restore-admin", verbosity=3,
                     extravars={"restore_confirm": True, "restore_backup_id": bid})
    try:
        assert restore.rc == 0, restore.stdout[-4000:]
        report = restore.artifact_data["db_restore"]
        assert report["backup"]["id"] == bid and report["restore"]["ok"] is True
        assert stack.psql("SELECT string_agg(v, ',') FROM ssh_probe") == "before"
        assert ssh["password"] not in restore.stdout
        assert ssh["password"] not in events_text(restore)
    finally:
        stack.wait_ready()
        stack.psql("DROP TABLE IF EXISTS ssh_probe")


def test_mitogen_opt_in_changes_nothing_hides_the_password_and_checks(ssh):
    """The opt-in strategy (ANSIBLE_STRATEGY=mitogen_linear, docs/transport.md) on the same
    converged host, as the sudo-password admin: no change, no password at -vvv, and
    --check changes nothing."""
    mitogen = {"ANSIBLE_STRATEGY": "mitogen_linear"}
    result = run_as(ssh, "admin", "site", "site-mitogen", verbosity=3, env=mitogen)
    assert result.rc == 0, result.stdout[-4000:]
    assert result.changed_tasks() == [], result.changed_tasks()
    # the strategy was loaded (ansible-core warns about any non-builtin strategy) and
    # Mitogen's connection did the work, not the ssh plugin (which logs this at -vvv)
    assert "strategy plugins not included in ansible.builtin" in result.stdout
    assert "ESTABLISH SSH CONNECTION" not in result.stdout
    assert ssh["password"] not in result.stdout
    assert ssh["password"] not in events_text(result)
    check = run_as(ssh, "admin", "site", "site-mitogen-check", cmdline="--check", env=mitogen)
    assert check.rc == 0, check.stdout[-4000:]
    assert check.changed_tasks() == [], check.changed_tasks()


def test_a_host_key_that_changed_is_refused(ssh, stack, tmp_path):
    """StrictHostKeyChecking is on: a known_hosts line that does not match stops the run
    before anything is done (no silent trust)."""
    inv = ssh["inventories"]["admin-np"]
    hosts_yml = yaml.safe_load((inv / "hosts.yml").read_text())
    host_vars = hosts_yml["all"]["children"]["bm_app"]["hosts"][stack.host]
    wrong = tmp_path / "known_hosts"
    other = controller_key(tmp_path / "other", "not-the-host").with_suffix(".pub")
    kind, key = other.read_text().split()[:2]
    wrong.write_text(f"{host_vars['ansible_host']} {kind} {key}\n")
    host_vars["ansible_ssh_common_args"] = (f"-o UserKnownHostsFile={wrong} "
                                            "-o StrictHostKeyChecking=yes")
    # a new connection, not the master the earlier tests left open (ControlPersist)
    host_vars["ansible_ssh_args"] = "-C -o ControlMaster=no"
    bad = write_inventory_text(tmp_path / "inventory", yaml.safe_dump(hosts_yml))
    result = run_playbook("daily_check", bad, tmp_path / "run")
    assert result.rc != 0
    assert "UNREACHABLE" in result.stdout or "unreachable" in result.stdout.lower()
    assert "Host key verification failed" in result.stdout or \
        "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stdout, result.stdout[-3000:]

