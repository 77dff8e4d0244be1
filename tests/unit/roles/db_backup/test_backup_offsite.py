# SPDX-License-Identifier: Apache-2.0
"""bmops-backup offsite: what is sent, when retention runs, how failures read.

restic itself is a stand-in here (a script that records its calls and answers as
restic 0.18 does: exit 12 for a wrong key, 1 with ssh's words when the host is
unreachable); the real restic over real SFTP is tests/integration/test_offsite_stack.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import textwrap

import pytest
from backup_harness import run, write_backup

FAKE_RESTIC = textwrap.dedent('''\
    #!/usr/bin/env python3
    import json, os, sys
    log = os.environ["FAKE_RESTIC_LOG"]
    args = sys.argv[1:]
    with open(log, "a") as fh:
        fh.write(json.dumps({"args": args, "key_file": os.environ.get("RESTIC_PASSWORD_FILE"),
                             "repo": os.environ.get("RESTIC_REPOSITORY")}) + "\\n")
    mode = os.environ.get("FAKE_RESTIC", "ok")
    if mode == "wrong_key":
        sys.stderr.write("Fatal: wrong password or no key found\\n"); sys.exit(12)
    if mode == "unreachable":
        sys.stderr.write("subprocess ssh: ssh: connect to host repo port 22: Connection "
                         "refused\\nFatal: unable to open repository: unable to start the "
                         "sftp session\\n"); sys.exit(1)
    if mode == "no_repo" and "cat" in args:
        sys.stderr.write("Fatal: repository does not exist\\n"); sys.exit(10)
    if "backup" in args:
        print(json.dumps({"message_type": "summary", "snapshot_id": "abcdef0123456789",
                          "total_files_processed": 4, "data_added": 1234}))
''')


@pytest.fixture
def offsite(env, monkeypatch):
    fake = env["tmp"] / "restic"
    fake.write_text(FAKE_RESTIC.replace("/usr/bin/env python3", sys.executable))
    fake.chmod(0o755)
    key = env["tmp"] / "key"
    key.write_text("0123456789abcdef-test")
    key.chmod(0o600)
    conf = env["tmp"] / "offsite.json"
    conf.write_text(json.dumps({
        "restic": str(fake), "repository": "sftp:bmops-offsite:/srv/bmops-repo/app1",
        "password_file": str(key), "ssh_config": "/dev/null", "host": "app1",
        "cache_dir": str(env["tmp"] / "cache"), "lock_file": str(env["tmp"] / "olock"),
        "config_paths": [str(env["cfg"])], "keep_days": 30, "keep_min": 3}))
    log = env["tmp"] / "restic.log"
    monkeypatch.setenv("FAKE_RESTIC_LOG", str(log))
    env.update(offsite=conf, log=log)
    return env


def calls(env) -> list[list[str]]:
    if not env["log"].exists():
        return []
    return [json.loads(line)["args"] for line in env["log"].read_text().splitlines()]


def send(env, *extra):
    return run(env, "offsite", "send", "--offsite-config", str(env["offsite"]), *extra)


def prom(env) -> str:
    return (env["prom"] / "bmops_offsite.prom").read_text()


def test_send_copies_the_backups_and_the_config_then_applies_retention(offsite):
    write_backup(offsite["dir"], "20261201_030000")
    write_backup(offsite["dir"], "20261202_030000")
    rc, out, err = send(offsite)
    assert rc == 0, err
    assert out["newest_id"] == "20261202_030000"
    assert out["copied_ids"] == ["20261202_030000", "20261201_030000"]
    verbs = [next(a for a in c if a in ("backup", "forget")) for c in calls(offsite)]
    assert verbs == ["backup", "backup", "forget", "forget"]
    forget = calls(offsite)[2]
    assert forget[forget.index("--keep-within") + 1] == "30d"
    assert forget[forget.index("--keep-last") + 1] == "3"
    assert "--prune" in forget
    # The key travels as a file name only; ssh goes through the role's ssh_config.
    first = json.loads(offsite["log"].read_text().splitlines()[0])
    assert first["key_file"].endswith("/key")
    assert not any("0123456789abcdef" in a for c in calls(offsite) for a in c)
    assert "sftp.command=ssh -F /dev/null bmops-offsite -s sftp" in calls(offsite)[0]
    assert "bmops_offsite_last_run_success 1" in prom(offsite)


def test_a_second_run_with_nothing_new_connects_to_nothing(offsite):
    write_backup(offsite["dir"], "20261202_030000")
    assert send(offsite)[0] == 0
    n = len(calls(offsite))
    rc, out, _ = send(offsite)
    assert rc == 0 and out["skipped"] is True
    assert len(calls(offsite)) == n
    assert send(offsite, "--force")[0] == 0 and len(calls(offsite)) > n


def test_an_unreachable_repository_is_recorded_and_retried(offsite, monkeypatch):
    write_backup(offsite["dir"], "20261202_030000")
    monkeypatch.setenv("FAKE_RESTIC", "unreachable")
    rc, out, _ = send(offsite)
    assert rc == 1 and "cannot be reached" in out["error"], out
    assert not any("forget" in c for c in calls(offsite)), "nothing forgotten after a failure"
    assert "bmops_offsite_last_run_success 0" in prom(offsite)
    assert "bmops_offsite_newest_backup_timestamp_seconds 0" in prom(offsite)
    monkeypatch.setenv("FAKE_RESTIC", "ok")
    rc, out, _ = send(offsite)  # the next run tries again: not "already copied"
    assert rc == 0 and not out.get("skipped"), out
    assert "bmops_offsite_last_run_success 1" in prom(offsite)


def test_a_wrong_key_names_the_variable_and_deletes_nothing(offsite, monkeypatch):
    write_backup(offsite["dir"], "20261202_030000")
    monkeypatch.setenv("FAKE_RESTIC", "wrong_key")
    rc, out, _ = send(offsite)
    assert rc == 1
    assert "wrong key" in out["error"] and "offsite_backup_password" in out["error"]
    assert "Nothing was deleted" in out["error"]
    assert not any("forget" in c for c in calls(offsite))
    assert (offsite["dir"] / "20261202_030000.json").exists()


def test_init_creates_only_a_missing_repository(offsite, monkeypatch):
    args = ("offsite", "init", "--offsite-config", str(offsite["offsite"]))
    rc, out, _ = run(offsite, *args)
    assert rc == 0 and out["created"] is False
    monkeypatch.setenv("FAKE_RESTIC", "no_repo")
    rc, out, _ = run(offsite, *args)
    assert rc == 0 and out["created"] is True
    assert calls(offsite)[-1][-1] == "init"
    monkeypatch.setenv("FAKE_RESTIC", "wrong_key")
    rc, out, _ = run(offsite, *args)
    assert rc == 1 and "wrong key" in out["error"]


def test_no_verified_backup_is_an_error_not_an_empty_copy(offsite):
    rc, out, _ = send(offsite)
    assert rc == 1 and "no verified backup" in out["error"]
    assert calls(offsite) == []


def test_without_the_role_the_error_says_what_to_enable(env, tmp_path):
    rc, out, _ = run(env, "offsite", "send", "--offsite-config", str(tmp_path / "none.json"))
    assert rc == 2 and "bm_offsite_enabled" in out["error"]


def test_fetch_reads_another_hosts_repository_when_named(offsite):
    """A standby restores the primary's copies: its own transport and key, the
    primary's repository and host tag; both backups and configuration."""
    target = offsite["tmp"] / "fetched"
    rc, out, err = run(offsite, "offsite", "fetch", "--offsite-config", str(offsite["offsite"]),
                       "--target", str(target), "--from-host", "app0",
                       "--from-repository", "sftp:bmops-offsite:/srv/bmops-repo/app0")
    assert rc == 0, err
    assert out["repository"] == "sftp:bmops-offsite:/srv/bmops-repo/app0"
    logged = [json.loads(line) for line in offsite["log"].read_text().splitlines()]
    assert [entry["repo"] for entry in logged] == ["sftp:bmops-offsite:/srv/bmops-repo/app0"] * 2
    assert [entry["args"][entry["args"].index("--tag") + 1] for entry in logged] == [
        "bmops-backups", "bmops-config"]
    assert all(entry["args"][entry["args"].index("--host") + 1] == "app0" for entry in logged)


def test_fetch_without_a_target_is_a_usage_error(offsite):
    rc, out, err = run(offsite, "offsite", "fetch", "--offsite-config", str(offsite["offsite"]))
    assert rc != 0 and "--target" in (err + json.dumps(out)), (rc, out, err)
    assert calls(offsite) == []


@pytest.mark.parametrize("action", ["send", "check"])
def test_a_run_that_finds_the_lock_held_records_nothing(offsite, action):
    """The run holding the lock records its own outcome; the one turned away must not
    overwrite it with a failure (that would fire BmOffsiteCopyFailed/CheckFailed)."""
    write_backup(offsite["dir"], "20261202_030000")
    assert send(offsite)[0] == 0
    before = prom(offsite)
    fd = os.open(str(offsite["tmp"] / "olock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        rc, out, _ = run(offsite, "offsite", action, "--offsite-config", str(offsite["offsite"]),
                         *(["--force"] if action == "send" else []))
    finally:
        os.close(fd)
    assert rc != 0 and "another off-host copy is running" in out["error"], out
    assert prom(offsite) == before
