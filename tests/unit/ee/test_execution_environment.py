# SPDX-License-Identifier: Apache-2.0
"""`ansible-builder create` turns execution-environment.yml into a build context.

It needs no registry, so CI proves the definition is valid and carries the
same dependencies as the project (collections pinned in requirements.yml,
Python packages, ansible-core pin).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import ROOT


def test_ansible_builder_create(tmp_path):
    builder = Path(sys.executable).with_name("ansible-builder")
    proc = subprocess.run(
        [str(builder), "create", "--file", str(ROOT / "execution-environment.yml"),
         "--context", str(tmp_path / "ctx")],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = tmp_path / "ctx" / "_build"
    assert (build / "requirements.yml").read_text() == (ROOT / "requirements.yml").read_text()
    assert "psycopg" in (build / "requirements.txt").read_text()
    dockerfile = (tmp_path / "ctx" / "Dockerfile").read_text()
    assert "ansible-core>=2.19.14,<2.20" in dockerfile
    assert "ansible-galaxy collection install" in dockerfile
    assert "ansible-runner>=2.4.3" in dockerfile
