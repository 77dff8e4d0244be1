# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.config and the command line: a private, known configuration, or exit 2."""

from __future__ import annotations

import json
import subprocess

import pytest
from backup_harness import TOOL, run, tool_env
from bmops_backup.cli import main


def test_config_must_be_private(env):
    env["cfg"].chmod(0o644)
    rc, out, _ = run(env, "list")
    assert rc == 2 and "chmod 0600" in out["error"]


@pytest.mark.parametrize("patch,needle", [({"format": "tar"}, "format"),
                                          ({"bogus": 1}, "unknown keys"),
                                          ({"keep_min": -1}, "keep_min")])
def test_bad_config_is_a_usage_error(env, patch, needle):
    cfg = json.loads(env["cfg"].read_text())
    env["cfg"].write_text(json.dumps({**cfg, **patch}))
    rc, out, _ = run(env, "list")
    assert rc == 2 and needle in out["error"]


def test_missing_config_and_bad_usage(env, tmp_path):
    res = subprocess.run([*TOOL, "--config", str(tmp_path / "nope"), "list"],
                         capture_output=True, text=True, check=False, env=tool_env())
    assert res.returncode == 2 and "not found" in res.stdout
    assert main(["no-such-command"]) == 2
