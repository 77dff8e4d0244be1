# SPDX-License-Identifier: Apache-2.0
"""docs/architecture.md tells the truth: every playbook, role, module, filter
plugin and host-side tool is on it, and the roles each playbook and role uses
are the ones the files really use (issue 13, item 6)."""

from __future__ import annotations

import re
import subprocess

import pytest
from helpers import ROOT
from helpers.ansible_tree import role_uses_in

DOC = (ROOT / "docs" / "architecture.md").read_text()


def table(heading: str) -> dict[str, set[str]]:
    """First column -> backticked names of the last column, of the table under heading."""
    section = DOC.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        rows[cells[0].strip("`")] = set(re.findall(r"`([^`]+)`", cells[-1]))
    return rows


def tracked(*patterns: str) -> list[str]:
    return subprocess.run(["git", "ls-files", "--", *patterns], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.split()


PLAYBOOKS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "playbooks").glob("*.yml"))
ROLES = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/main.yml"))


def test_every_playbook_and_role_is_on_the_map():
    assert set(table("Playbooks")) == set(PLAYBOOKS)
    assert set(table("Roles")) == set(ROLES)


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_the_map_names_the_roles_a_playbook_uses(playbook):
    used = {role for role, _ in role_uses_in(ROOT / playbook)}
    assert table("Playbooks")[playbook] == used, f"{playbook} uses {sorted(used) or 'no role'}"


@pytest.mark.parametrize("role", ROLES)
def test_the_map_names_the_roles_a_role_calls(role):
    used = {name for path in (ROOT / "roles" / role / "tasks").glob("*.yml")
            for name, _ in role_uses_in(path)} - {role}
    assert table("Roles")[role] == used, f"role {role} calls {sorted(used) or 'no role'}"


def test_every_plugin_and_host_tool_is_on_the_map():
    files = tracked("plugins/modules/*.py", "filter_plugins/*.py", "roles/*/filter_plugins/*.py",
                    "roles/*/files/*")
    listed = set(table("Plugins and host-side tools"))
    missing = [f for f in files if f not in listed
               and not any(f.startswith(entry.rstrip("/") + "/") for entry in listed)]
    assert not missing, f"docs/architecture.md does not list: {missing}"
    gone = [entry for entry in listed if not (ROOT / entry).exists()]
    assert not gone, f"docs/architecture.md lists files that do not exist: {gone}"
