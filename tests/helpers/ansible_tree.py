# SPDX-License-Identifier: Apache-2.0
"""Read which roles a playbook or a tasks file uses, from its YAML."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROLE_KEYS = ("ansible.builtin.include_role", "ansible.builtin.import_role",
             "include_role", "import_role")


def role_uses(node: Any) -> Iterator[tuple[str, str | None]]:
    """(role, entry point or None) for every include/import_role and `roles:` entry."""
    if isinstance(node, dict):
        for key in ROLE_KEYS:
            args = node.get(key)
            if isinstance(args, dict):
                entry = args.get("tasks_from")
                yield args["name"], Path(str(entry)).stem if entry else None
        roles = node.get("roles")
        for item in roles if isinstance(roles, list) else []:
            yield (item["role"] if isinstance(item, dict) else item), None
        for value in node.values():
            yield from role_uses(value)
    elif isinstance(node, list):
        for value in node:
            yield from role_uses(value)


def role_uses_in(path: Path) -> list[tuple[str, str | None]]:
    return list(role_uses(yaml.safe_load(path.read_text())))
