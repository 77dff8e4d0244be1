# SPDX-License-Identifier: Apache-2.0
"""The AWX credentials of roles/awx inject what the playbooks read, where they read it.

Each custom credential type injects extra vars (or environment variables) that
must be variables a role really reads; and each job template must get every
credential whose secrets its playbook reads, and no other. Which template needs
which secret is worked out here from the playbooks and roles themselves: the
Jinja expressions and conditions of every tasks file and template a playbook
reaches (through roles:, include_role / import_role with tasks_from,
import_tasks / include_tasks, import_playbook), and the role defaults that
pass a secret on under another name (app_stack_db_password: "{{ bm_db_password }}").
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import jinja2
import pytest
import yaml
from helpers import ROOT
from helpers.ansible_tree import role_uses

ROLES = ROOT / "roles"


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's !unsafe and !vault tags as plain strings."""


for _tag in ("!unsafe", "!vault"):
    _Loader.add_constructor(_tag, lambda loader, node: loader.construct_scalar(node))


def load(path: Path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506


AWX = load(ROLES / "awx" / "defaults" / "main.yml")
AWX_VARS = load(ROLES / "awx" / "vars" / "main.yml")
SHORT_NAMES = AWX_VARS["__awx_credential_names"]
# short name -> (its credential type's inputs, injectors)
TYPES = {
    short: (AWX[f"awx_{short}_credential_type_inputs"],
            AWX[f"awx_{short}_credential_type_injectors"])
    for short in SHORT_NAMES
    if f"awx_{short}_credential_type_injectors" in AWX
}
TASKS_FILE = ROLES / "awx" / "tasks" / "credentials.yml"

JINJA_RE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
# Keys whose value is a bare Jinja expression.
CONDITION_KEYS = {"that", "when", "failed_when", "changed_when", "until", "loop", "with_items"}
TASK_INCLUDE_KEYS = ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks",
                     "import_tasks", "include_tasks")
TEMPLATE_KEYS = ("ansible.builtin.template", "template")


def expressions(node, key: str | None = None) -> list[str]:
    """The Jinja expressions of a parsed YAML file: inside {{ }} / {% %}, and conditions."""
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out += expressions(v, k)
    elif isinstance(node, list):
        for v in node:
            out += expressions(v, key)
    elif isinstance(node, str):
        out += ["".join(m) for m in JINJA_RE.findall(node)]
        if key in CONDITION_KEYS:
            out.append(node)
    return out


def walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def defaults() -> dict[str, str]:
    """Every role default but awx's as text (name -> its value dumped), for the alias search."""
    out = {}
    for path in sorted(ROLES.glob("*/defaults/main.yml")):
        if path.parent.parent.name == "awx":
            continue
        for name, value in (load(path) or {}).items():
            out[name] = value if isinstance(value, str) else yaml.safe_dump(value)
    return out


DEFAULTS = defaults()


def names_fed_by(start: set[str], env: set[str] = frozenset()) -> set[str]:
    """start plus every role default whose value reads one of them (or one of the env vars)."""
    found = set(start)
    found |= {n for n, v in DEFAULTS.items() if any(f"'{e}'" in v for e in env)}
    while True:
        more = {n for n, v in DEFAULTS.items() if n not in found
                and any(re.search(rf"\b{re.escape(f)}\b", v) for f in found)}
        if not more:
            return found
        found |= more


def injected(short: str) -> tuple[set[str], set[str]]:
    """(extra vars, environment variables) a credential type injects."""
    injectors = TYPES[short][1]
    return set(injectors.get("extra_vars", {})), set(injectors.get("env", {}))


@cache
def role_expressions(role: str, tasks_file: str) -> tuple[str, ...]:
    """Expressions of a role's tasks file and all it reaches (tasks, templates, roles)."""
    path = ROLES / role / "tasks" / tasks_file
    if not path.suffix:
        path = path.with_suffix(".yml")
    tree = load(path) or []
    out = expressions(tree)
    for node in walk(tree):
        for key in TASK_INCLUDE_KEYS:
            target = node.get(key)
            target = target.get("file") if isinstance(target, dict) else target
            if isinstance(target, str):
                assert "{{" not in target, f"{path}: cannot follow a templated include {target}"
                out += role_expressions(role, target)
        if any(key in node for key in TEMPLATE_KEYS):
            # the template's name may be templated: count every template of the role
            for tpl in sorted((ROLES / role / "templates").rglob("*")):
                if tpl.is_file():
                    out += ["".join(m) for m in JINJA_RE.findall(tpl.read_text(encoding="utf-8"))]
    for used_role, entry in role_uses(tree):
        out += role_expressions(used_role, entry or "main")
    return tuple(out)


def playbook_expressions(path: Path) -> list[str]:
    tree = load(path)
    out = expressions(tree)
    for play in tree:
        if "ansible.builtin.import_playbook" in play:
            out += playbook_expressions(path.parent / play["ansible.builtin.import_playbook"])
    for role, entry in role_uses(tree):
        out += role_expressions(role, entry or "main")
    return out


def reads_any(exprs: list[str] | tuple[str, ...], names: set[str]) -> bool:
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(names))) + r")\b")
    return any(pattern.search(e) for e in exprs)


def needed_credentials(playbook: str) -> set[str]:
    exprs = playbook_expressions(ROOT / playbook)
    return {short for short in TYPES if reads_any(exprs, names_fed_by(*injected(short)))}


@pytest.mark.parametrize("short", sorted(TYPES))
def test_injected_extra_vars_are_settings_the_roles_declare(short):
    """An extra var nobody reads would leave the secret unset without a word."""
    extra_vars, _env = injected(short)
    specs = "\n".join(p.read_text(encoding="utf-8")
                      for p in sorted(ROLES.glob("*/meta/argument_specs.yml"))
                      if p.parts[-3] != "awx")
    for name in extra_vars:
        assert re.search(rf"^\s+{name}:\s*$", specs, re.M), f"{name} is in no argument_specs.yml"
        assert name in DEFAULTS, f"{name} has no default in any role"
        assert len(names_fed_by({name})) > 1 or any(
            reads_any(role_expressions(p.parent.parent.name, p.name), {name})
            for p in ROLES.glob("*/tasks/*.yml")), f"{name} is read by no role"


@pytest.mark.parametrize("short", sorted(TYPES))
def test_injected_environment_is_read_by_the_roles(short):
    _extra_vars, env = injected(short)
    for name in env:
        readers = [n for n, v in DEFAULTS.items() if f"'ansible.builtin.env', '{name}'" in v]
        assert readers, f"no role default reads the environment variable {name}"


@pytest.mark.parametrize("short", sorted(TYPES))
def test_injectors_use_only_their_inputs_and_secrets_are_marked(short):
    inputs, injectors = TYPES[short]
    ids = {f["id"] for f in inputs["fields"]}
    for kind in ("extra_vars", "env"):
        for name, template in injectors.get(kind, {}).items():
            used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", template))
            assert used and used <= ids, f"{name}: {template} uses no known input"
    for field in inputs["fields"]:
        if re.search(r"password|token|key", field["id"]):
            assert field.get("secret") is True, f"{short}.{field['id']} must be secret"


@pytest.mark.parametrize("short", sorted(set(TYPES) - {"smtp"}))
def test_secret_only_types_require_nothing(short):
    """The credentials are created as empty placeholders; a required input would refuse that."""
    assert not TYPES[short][0].get("required")


def test_every_credential_type_has_a_credential_with_its_inputs():
    tasks = load(TASKS_FILE)
    created = next(t for t in tasks if "awx.awx.credential" in t)["loop"]
    by_type = {c["type"]: c for c in created}
    for short, (inputs, _injectors) in TYPES.items():
        credential = by_type[f"{{{{ awx_{short}_credential_type }}}}"]
        assert credential["name"] == f"{{{{ awx_{short}_credential }}}}"
        assert set(credential["inputs"]) == {f["id"] for f in inputs["fields"]}
    types_created = {t["name"] for t in AWX_VARS["__awx_credential_types"]}
    assert types_created == {f"{{{{ awx_{short}_credential_type }}}}" for short in TYPES}


def test_credential_tasks_hide_their_secrets():
    for task in load(TASKS_FILE):
        if "awx.awx.credential" in task:
            assert task.get("no_log") is True


@pytest.mark.parametrize("template", AWX["awx_job_templates"], ids=lambda t: t["name"])
def test_each_template_gets_exactly_the_credentials_its_playbook_reads(template):
    given = set(template["credentials"]) - {"machine"}
    assert given == needed_credentials(template["playbook"])


def test_analysis_sees_the_known_readers():
    """The search itself works: secrets it must find, and places that read none."""
    assert needed_credentials("playbooks/site.yml") == {"stack", "offsite", "eda", "smtp"}
    assert needed_credentials("playbooks/daily_check.yml") == {"stack", "smtp"}
    assert needed_credentials("playbooks/log_level.yml") == set()
    assert "app_stack_db_password" in names_fed_by({"bm_db_password"})


def test_vault_credential_is_optional_and_credentials_can_be_skipped():
    """The credentials expression of the job template task, rendered for each setting."""
    tasks = load(ROLES / "awx" / "tasks" / "templates.yml")
    task = next(t for t in tasks if "awx.awx.job_template" in t)
    expr = task["awx.awx.job_template"]["credentials"]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    env.filters["bool"] = bool
    env.filters["extract"] = lambda key, mapping: mapping[key]
    names = {k: k.upper() for k in SHORT_NAMES}
    site = AWX["awx_job_templates"][0]

    def render(enabled, skip):
        return yaml.safe_load(env.from_string(expr).render(
            item=site, awx_vault_credential_enabled=enabled, awx_credentials_skip=skip,
            __awx_credential_names=names))

    assert AWX["awx_vault_credential_enabled"] is False
    assert AWX["awx_credentials_skip"] == []
    assert "VAULT" not in render(False, [])
    assert render(True, [])[-1] == "VAULT"
    assert "OFFSITE" not in render(True, ["offsite"])
    assert all("vault" not in t["credentials"] for t in AWX["awx_job_templates"])
