# SPDX-License-Identifier: Apache-2.0
"""The shared bm_* settings have one owner, role bmops_common (issue 13).

- nobody retypes a default: no ``bm_x | default(...)`` outside that role;
- every bm_* variable used anywhere is defined there, with the same default in
  its defaults/main.yml and its meta/argument_specs.yml;
- every role that reads a bm_* setting depends on bmops_common;
- a non-default bm_backend_port reaches every role that talks to the backend;
- docs/contracts.md shows exactly the argument spec (``--write`` rewrites it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

if __name__ == "__main__":  # run as a script to rewrite docs/contracts.md
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from helpers import ROOT

OWNER = ROOT / "roles" / "bmops_common"
CONTRACTS = ROOT / "docs" / "contracts.md"
BEGIN = "<!-- bm_* table: generated from roles/bmops_common/meta/argument_specs.yml -->"
END = "<!-- end of the generated bm_* table -->"
# Names that start with bm_ but are not settings: the inventory groups, plugins, and the
# monitoring's Prometheus label bm_host and job bm_ready.
NOT_SETTINGS_RE = re.compile(r"^bm_(app|monitoring|backup_repository|standby|"
                             r"daily_limits|host|ready|"
                             r"evaluate_\w+|"
                             r"health_info|pg_stats_info|awx_\w+|"
                             r"triage\w*|review_\w+|certificate_checks|apt_upgrades|vacuum_report|"
                             r"log_level_readback|report_summary|stats_summary|prometheus|notify_once|"
                             r"docker_log_config_issues|files_differ|files|ops_check_\w+|checks|ops|common|"
                             r"health|pg_stats|postgres|eda|alert_response)$")
# (a key of a mapping, e.g. an alert's labels.bm_host, is not a setting)
DEFAULT_RE = re.compile(r"(?<![.\w])bm_[a-z_]+\s*\|\s*default\s*\(")
SETTING_RE = re.compile(r"\bbm_[a-z0-9_]+\b")


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--", *patterns], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    return [ROOT / p for p in out]


def owner_defaults() -> dict:
    return yaml.safe_load((OWNER / "defaults" / "main.yml").read_text())


def owner_spec() -> dict:
    spec = yaml.safe_load((OWNER / "meta" / "argument_specs.yml").read_text())
    return spec["argument_specs"]["main"]["options"]


def roles() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "roles").glob("*/meta"))


def test_no_bm_default_is_retyped_outside_the_owner():
    hits = []
    for path in tracked("*.yml", "*.yaml", "*.j2", "*.md", "*.py", "*.sh", "*.cfg"):
        if OWNER in path.parents or path == Path(__file__):
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if DEFAULT_RE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "bm_* defaults belong to roles/bmops_common only:\n" + "\n".join(hits)


def test_the_check_finds_a_retyped_default():
    assert DEFAULT_RE.search("x: \"{{ bm_backend_port | default(8000) }}\"")
    assert DEFAULT_RE.search("when: bm_certbot_enabled|default(true)")
    assert not DEFAULT_RE.search("x: \"{{ bm_backend_port }}\"")


def test_defaults_and_argument_spec_agree():
    defaults, spec = owner_defaults(), owner_spec()
    assert set(defaults) == set(spec), "defaults/main.yml and argument_specs.yml differ"
    for name, option in spec.items():
        assert option.get("description"), f"{name}: no description"
        assert option.get("default") == defaults[name], f"{name}: defaults differ"
        assert name.startswith("bm_")


def filter_names() -> set[str]:
    """The bm_* filters the plugins in filter_plugins/ define (names, not settings)."""
    names: set[str] = set()
    for path in (ROOT / "filter_plugins").glob("*.py"):
        names |= set(re.findall(r"""['"](bm_\w+)['"]\s*:""", path.read_text()))
    return names


def test_every_bm_setting_used_is_owned():
    owned = set(owner_defaults()) | filter_names()
    assert {"bm_t", "bm_checklist", "bm_evaluate_daily"} <= filter_names()
    unknown: dict[str, str] = {}
    for path in tracked("roles/*.yml", "roles/*.j2", "playbooks/*.yml", "bench/*.yml",
                        "inventory/*.yml", "molecule/*.yml"):
        if OWNER in path.parents:
            continue
        for name in SETTING_RE.findall(path.read_text()):
            if name not in owned and not NOT_SETTINGS_RE.match(name):
                unknown.setdefault(name, str(path.relative_to(ROOT)))
    assert not unknown, f"bm_* names used but not defined in roles/bmops_common: {unknown}"


def test_every_role_that_reads_a_setting_depends_on_the_owner():
    owned = set(owner_defaults())
    missing = []
    for role in roles():
        if role == OWNER:
            continue
        text = "\n".join(p.read_text() for p in role.rglob("*")
                         if p.is_file() and p.suffix in (".yml", ".j2"))
        if owned & set(SETTING_RE.findall(text)):
            meta = yaml.safe_load((role / "meta" / "main.yml").read_text())
            deps = meta.get("dependencies") or []
            names = [d["role"] if isinstance(d, dict) else d for d in deps]
            if "bmops_common" not in names:
                missing.append(role.name)
    assert not missing, f"roles reading bm_* settings without depending on bmops_common: {missing}"


def rendered_defaults(role: Path, overrides: dict) -> dict:
    """The role's defaults as Ansible renders them, with bmops_common beneath."""
    loader = DataLoader()
    variables = dict(loader.load_from_file(str(OWNER / "defaults" / "main.yml"),
                                           trusted_as_template=True))
    own = loader.load_from_file(str(role / "defaults" / "main.yml"), trusted_as_template=True) or {}
    variables.update(own)
    variables.update(overrides)
    templar = Templar(loader=loader, variables=variables)
    rendered = {}
    for name in own:
        try:
            rendered[name] = templar.template(own[name])
        except AnsibleError:  # needs facts, lookups or registered results
            continue
    return rendered


# Every role that talks to the backend, and the variable through which it does.
BACKEND_USERS = {
    "app_stack": ["app_stack_backend_port", "app_stack_health_url"],
    "nginx_proxy": ["nginx_proxy_backend_port"],
    "db_backup": ["db_backup_health_url"],  # the restore's /health/ready wait
    "incident_triage": ["incident_triage_health_url"],
    "maintenance": ["maintenance_health_url"],
    "service_restart": ["service_restart_health_url"],
}


@pytest.mark.parametrize("role", sorted(BACKEND_USERS))
def test_a_non_default_backend_port_reaches_the_role(role):
    values = rendered_defaults(ROOT / "roles" / role, {"bm_backend_port": 8080})
    for name in BACKEND_USERS[role]:
        assert "8080" in str(values[name]), f"{role}: {name} = {values[name]!r}"
    stale = {k: v for k, v in values.items() if re.search(r"(?<!\d)8000(?!\d)", str(v))}
    assert not stale, f"{role}: still on port 8000 with bm_backend_port 8080: {stale}"


def test_no_role_default_keeps_the_default_backend_port():
    for role in roles():
        if role == OWNER or not (role / "defaults" / "main.yml").exists():
            continue
        values = rendered_defaults(role, {"bm_backend_port": 8080})
        stale = {k: v for k, v in values.items() if re.search(r":8000\b", str(v))}
        assert not stale, f"{role.name}: {stale}"


def test_the_restore_waits_on_the_role_health_url():
    restore = (ROOT / "roles" / "db_backup" / "tasks" / "restore.yml").read_text()
    assert "db_backup_health_url" in restore
    assert not re.search(r"127\.0\.0\.1:\d+", restore)


def contract_table() -> str:
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, option in owner_spec().items():
        default = option.get("default")
        if option.get("no_log"):
            shown = "(secret, required)"
        elif isinstance(default, str):  # SQL on one line: a table row has no newline
            shown = f"`{' '.join(default.split())}`" if default else "(empty)"
        else:
            shown = "`" + json.dumps(default) + "`"
        kind = option["type"] + (f" of {option['elements']}" if "elements" in option else "")
        shown = shown.replace("|", "&#124;")
        rows.append(f"| `{name}` | {kind} | {shown} | {option['description']} |")
    return "\n".join([BEGIN, *rows, END])


def test_contracts_doc_shows_the_argument_spec():
    text = CONTRACTS.read_text()
    assert BEGIN in text and END in text, f"{CONTRACTS} lacks the generated table markers"
    current = text[text.index(BEGIN):text.index(END) + len(END)]
    assert current == contract_table(), (
        "docs/contracts.md is out of date with roles/bmops_common/meta/argument_specs.yml; "
        "run: .venv/bin/python tests/unit/repo/test_shared_settings.py --write")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    text = CONTRACTS.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    CONTRACTS.write_text(text[:start] + contract_table() + text[end:])
