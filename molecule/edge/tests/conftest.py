# SPDX-License-Identifier: Apache-2.0
"""Helpers for the edge scenario: run playbooks against the Molecule instance,
read what nginx serves, reach the sibling containers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).resolve().parents[1]
HOST = "bmops-edge-host"
SMTP = "bmops-edge-smtp"
HOST_VARS = yaml.safe_load((SCENARIO / "inventory" / "host_vars" / f"{HOST}.yml").read_text())
DOMAIN = HOST_VARS["bm_domain"]
CA_BUNDLE = HOST_VARS["certbot_acme_ca_bundle"]
CERT = f"/etc/nginx/ssl/{DOMAIN}/fullchain.pem"
SITE = "/etc/nginx/conf.d/bmops.conf"
SKIP_STACK = ["--skip-tags", "docker_engine_install,docker_engine_configure,docker_engine_run,"
              "app_stack_install,app_stack_configure,app_stack_run"]


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="session")
def run_playbook():
    """Run a playbook of this scenario (json callback) with Molecule's inventory."""
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    binary = Path(sys.executable).with_name("ansible-playbook")

    def run(playbook: str, *args: str) -> tuple[int, dict, str]:
        env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
                   ANSIBLE_LIBRARY=str(ROOT / "plugins" / "modules"),
                   ANSIBLE_MODULE_UTILS=str(ROOT / "plugins" / "module_utils"),
                   ANSIBLE_FILTER_PLUGINS=str(ROOT / "filter_plugins"))
        proc = subprocess.run([str(binary), "-i", inventory, str(SCENARIO / playbook), *args],
                              capture_output=True, text=True, env=env, timeout=900)
        try:
            # other callbacks (profile_tasks) may print around the JSON document
            out, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            out = {}
        return proc.returncode, out, proc.stdout + proc.stderr

    return run


def failures(out: dict) -> list[tuple[str, str]]:
    """(task name, message) of every failed task result in json callback output."""
    found = []
    for play in out.get("plays", []):
        for task in play.get("tasks", []):
            for res in task.get("hosts", {}).values():
                if res.get("failed"):
                    found.append((task["task"]["name"],
                                  str(res.get("msg", "")) + str(res.get("stderr", ""))))
    return found


def served(host) -> dict:
    """Issuer, serial and notAfter of the certificate nginx serves for DOMAIN."""
    out = host.check_output(
        f"echo | openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} 2>/dev/null"
        " | openssl x509 -noout -issuer -serial -enddate")
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip()
    return fields


def wait_for(predicate, timeout: float = 20, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)
