# SPDX-License-Identifier: Apache-2.0
"""Render role monitoring's templates with its defaults (for the unit tests).

The templates use [[ ]] for Ansible's variables (their #jinja2 header), so the
Prometheus / Alertmanager {{ }} templates pass through; this renders them the
way the template module does, with the role's defaults and the daily check's
thresholds (bm_daily_limits), and the few Ansible filters they use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import yaml
from bm_checks import daily_limits
from bm_i18n import translate
from helpers import ROOT

ROLE = ROOT / "roles" / "monitoring"
TOOLS = Path(os.environ.get("BMOPS_CACHE", "/var/cache/bmops")) / "tools" / "bin"


def tool(name: str) -> str:
    found = shutil.which(name) or (str(TOOLS / name) if (TOOLS / name).exists() else None)
    if not found:
        raise AssertionError(f"{name} is missing: run `make setup` (tests/harness/os_deps.sh)")
    return found


def context(**overrides) -> dict:
    ctx = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    ctx.update(
        __monitoring_limits=daily_limits({}),
        __monitoring_server_local=True,
        __monitoring_server_hosts=[],
        __monitoring_rules_dir="/etc/prometheus/rules",
        monitoring_language="en",
        inventory_hostname="app1",
        groups={"bm_app": ["app1"]},
        hostvars={"app1": {}},
        bm_domain="backup-mgmt.example",
        monitoring_exporter_listen_address="127.0.0.1",
        monitoring_probe_url="https://backup-mgmt.example/health/ready",
        monitoring_mail_host="smtp.example", monitoring_mail_port=25,
        monitoring_mail_username="", monitoring_mail_password="",
        monitoring_mail_from="bmops@app1",
        monitoring_mail_to=["ops@example.com"],
        monitoring_pager_webhooks=[{"name": "pager", "url": "http://pager.example/hook"}],
        monitoring_responder_url="", monitoring_responder_token="",
    )
    ctx.update(overrides)
    return ctx


def render(name: str, **overrides) -> str:
    text = (ROLE / "templates" / name).read_text()
    header, _, body = text.partition("\n")
    env = jinja2.Environment(  # noqa: S701 - YAML, not HTMLloader=jinja2.FileSystemLoader(ROLE / "templates"),
                             variable_start_string="[[", variable_end_string="]]",
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps
    env.filters["bool"] = bool
    env.filters["bm_t"] = translate
    assert header.startswith("#jinja2:"), name
    return env.from_string(body).render(context(**overrides))


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd, timeout=120)
