# SPDX-License-Identifier: Apache-2.0
"""Role monitoring's preflight: bad input fails naming the variable (issue 23).

The preflight is pure assertions, so it runs here on localhost without a host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

PLAY = """- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: monitoring
        tasks_from: preflight
"""
GOOD = {"bm_domain": "bm.example", "monitoring_mail_to": ["ops@example.com"]}


def preflight(tmp_path, **extra) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAY, encoding="utf-8")
    (tmp_path / "vars.json").write_text(json.dumps({**GOOD, **extra}), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
         str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_good_input_passes(tmp_path):
    proc = preflight(tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:]


@pytest.mark.parametrize("extra, named", [
    ({"monitoring_extra_rules": [{"alert": "X", "expr": "vector(1)",
                                  "labels": {"severity": "critical"}}]},
     "monitoring_extra_rules"),
    ({"monitoring_pager_webhooks": [{"name": "pager"}]}, "monitoring_pager_webhooks"),
    ({"monitoring_mail_to": []}, "monitoring_mail_to"),
    ({"monitoring_responder_url": "eda:5000", "monitoring_responder_token": "t" * 20},
     "monitoring_responder_url"),
    ({"monitoring_responder_url": "http://eda:5000/endpoint"}, "monitoring_responder_token"),
])
def test_bad_input_fails_naming_the_variable(tmp_path, extra, named):
    proc = preflight(tmp_path, **extra)
    assert proc.returncode != 0
    assert named in proc.stdout, proc.stdout[-2000:]
