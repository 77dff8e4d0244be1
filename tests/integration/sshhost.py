# SPDX-License-Identifier: Apache-2.0
"""Reach a managed-host container over SSH as a real site does: sshd on the host, an
admin account with sudo, the controller's key authorised, the host key known to the
controller through the inventory (StrictHostKeyChecking stays on)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hosts import docker


def enable_sshd(host: str) -> None:
    """openssh-server installed (the image carries its .deb) and running on HOST."""
    docker("exec", host, "sh", "-ec",
           "command -v sshd >/dev/null || DEBIAN_FRONTEND=noninteractive "
           "apt-get install -y -q --no-install-recommends openssh-server >/dev/null; "
           "systemctl enable --now ssh >/dev/null 2>&1 || systemctl start ssh")


def controller_key(directory: Path, comment: str) -> Path:
    """An ed25519 key pair of the controller in DIRECTORY (made once)."""
    key = directory / "id_ed25519"
    if not key.exists():
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", str(key)], check=True)
    return key


def address(host: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                  host).stdout.strip()


def known_hosts_line(host: str) -> str:
    """HOST's ed25519 host key as a known_hosts line for its address."""
    kind, key = docker("exec", host, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
    return f"{address(host)} {kind} {key}"


def authorise(host: str, user: str, pub: str) -> None:
    home = "/root" if user == "root" else f"/home/{user}"
    docker("exec", host, "sh", "-ec",
           f"install -d -m 0700 -o {user} -g {user} {home}/.ssh; "
           f"grep -qxF '{pub}' {home}/.ssh/authorized_keys 2>/dev/null "
           f"|| echo '{pub}' >> {home}/.ssh/authorized_keys; "
           f"chown {user}:{user} {home}/.ssh/authorized_keys; "
           f"chmod 0600 {home}/.ssh/authorized_keys")


def admin_account(host: str, user: str, pub: str, sudo_password: str | None) -> None:
    """USER with sudo on HOST: with SUDO_PASSWORD, sudo asks for it (the password goes
    through chpasswd's stdin, never an argument); without, NOPASSWD."""
    docker("exec", host, "sh", "-ec",
           f"id {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}")
    if sudo_password is None:
        rule = f"{user} ALL=(ALL:ALL) NOPASSWD: ALL"
        docker("exec", host, "passwd", "-l", user)
    else:
        rule = f"{user} ALL=(ALL:ALL) ALL"
        docker("exec", "-i", host, "chpasswd", input=f"{user}:{sudo_password}\n")
    docker("exec", host, "sh", "-ec",
           f"printf '%s\\n' '{rule}' > /etc/sudoers.d/90-{user} && "
           f"chmod 0440 /etc/sudoers.d/90-{user} && visudo -cq")
    authorise(host, user, pub)


def ssh_host_vars(host: str, user: str, key: Path, known_hosts: Path) -> dict:
    """Inventory variables that reach HOST over SSH as USER and become root with sudo."""
    return {
        "ansible_connection": "ssh",
        "ansible_host": address(host),
        "ansible_user": user,
        "ansible_become": True,
        "ansible_become_method": "sudo",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} "
                                   "-o StrictHostKeyChecking=yes",
        "ansible_python_interpreter": "/usr/bin/python3",
    }
