# SPDX-License-Identifier: Apache-2.0
"""Unit-test fixtures: run an Ansible module's main() in-process."""

from __future__ import annotations

import pytest
from ansible.module_utils import basic
from helpers.module_harness import ExitJson, FailJson


@pytest.fixture
def module_exit(monkeypatch):
    """exit_json / fail_json raise ExitJson / FailJson carrying the result."""

    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
