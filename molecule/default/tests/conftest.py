# SPDX-License-Identifier: Apache-2.0
"""Helpers for the default scenario: run site.yml against the Molecule instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEMO_VARS = ROOT / "inventory" / "demo" / "group_vars" / "bm_app"


@pytest.fixture(scope="session")
def demo_vars() -> dict:
    data: dict = {}
    for f in sorted(DEMO_VARS.glob("*.yml")):
        data.update(yaml.safe_load(f.read_text()) or {})
    return data


@pytest.fixture(scope="session")
def run_site():
    """Run playbooks/site.yml (json callback) with Molecule's inventory and env."""
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    playbook = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"
    binary = Path(sys.executable).with_name("ansible-playbook")

    def run(*args: str) -> tuple[int, dict, str]:
        env = dict(
            os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0"
        )
        proc = subprocess.run(
            [str(binary), "-i", inventory, str(playbook), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=1200,
        )
        try:
            # other callbacks (profile_tasks) may print around the JSON document
            out = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{") :])[0]
        except ValueError:
            out = {}
        return proc.returncode, out, proc.stdout + proc.stderr

    return run


def task_results(out: dict):
    """(task name, host, result) for every task result in json callback output."""
    for play in out.get("plays", []):
        for task in play.get("tasks", []):
            for host, res in task.get("hosts", {}).items():
                yield task["task"]["name"], host, res
