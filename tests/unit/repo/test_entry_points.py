# SPDX-License-Identifier: Apache-2.0
"""Roles use each other only through declared entry points (issue 13, item 3).

Every ``include_role`` / ``import_role`` with ``tasks_from`` in a role or a
playbook names an entry point that the callee declares in its
meta/argument_specs.yml and documents in its README.
"""

from __future__ import annotations

import pytest
import yaml
from helpers import ROOT
from helpers.ansible_tree import role_uses_in


def all_calls() -> list[tuple[str, str, str]]:
    out = []
    files = sorted((ROOT / "roles").glob("*/tasks/*.yml")) + sorted(
        (ROOT / "playbooks").glob("*.yml"))
    for path in files:
        for role, entry in role_uses_in(path):
            if entry is not None:
                out.append((str(path.relative_to(ROOT)), role, entry))
    return out


CALLS = all_calls()


def test_the_scan_finds_the_known_callers():
    assert ("roles/maintenance/tasks/images.yml", "app_stack", "images") in CALLS
    assert any(role == "host_lock" and entry == "acquire" for _, role, entry in CALLS)


@pytest.mark.parametrize(("caller", "role", "entry"), CALLS,
                         ids=[f"{c}->{r}:{e}" for c, r, e in CALLS])
def test_the_entry_point_is_declared_and_documented(caller, role, entry):
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    assert entry in specs["argument_specs"], (
        f"{caller} calls role {role} tasks_from {entry}, which "
        f"roles/{role}/meta/argument_specs.yml does not declare as an entry point")
    assert (ROOT / "roles" / role / "tasks" / f"{entry}.yml").exists()
    readme = (ROOT / "roles" / role / "README.md").read_text()
    assert f"`{entry}`" in readme or f"tasks_from: {entry}" in readme, (
        f"roles/{role}/README.md does not document the entry point {entry}")
