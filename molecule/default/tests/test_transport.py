# SPDX-License-Identifier: Apache-2.0
"""The scenario reached its host the way real sites do (prepare.yml): over SSH as
``admin``, becoming root with sudo, the host key pinned, never as root over SSH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


def host_vars() -> dict:
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    binary = Path(sys.executable).with_name("ansible-inventory")
    out = subprocess.run([str(binary), "-i", inventory, "--host", "bmops-host-default",
                          "--yaml"], capture_output=True, text=True, check=True).stdout
    return yaml.safe_load(out)


def test_the_inventory_says_ssh_as_admin_with_sudo_and_a_pinned_key():
    hv = host_vars()
    assert hv["ansible_connection"] == "ssh"
    assert hv["ansible_user"] == "admin"
    assert hv["ansible_become"] is True and hv["ansible_become_method"] == "sudo"
    assert "StrictHostKeyChecking=yes" in hv["ansible_ssh_common_args"]
    known = hv["ansible_ssh_common_args"].split("UserKnownHostsFile=")[1].split()[0]
    assert f"{hv['ansible_host']} ssh-ed25519 " in Path(known).read_text()


def test_sshd_let_admin_in_by_key_and_sudo_made_it_root(host):
    sshd = host.check_output("journalctl -u ssh --no-pager -o cat")
    accepted = [line for line in sshd.splitlines() if line.startswith("Accepted ")]
    assert accepted, sshd[-2000:]
    # every login was admin's, by key: nobody came in as root over SSH
    assert all(line.startswith("Accepted publickey for admin ") for line in accepted), accepted
    sudo = host.check_output("journalctl _COMM=sudo --no-pager -o cat")
    # converge, idempotence and check ran their modules as root through admin's sudo
    assert sudo.count("admin : ") > 50 and "USER=root" in sudo, sudo[-2000:]
