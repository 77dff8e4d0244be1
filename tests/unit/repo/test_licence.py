# SPDX-License-Identifier: Apache-2.0
"""One licence for the whole repository, one min_ansible_version, honest platforms."""

from __future__ import annotations

import re
import subprocess
from pathlib import PurePath

import yaml
from helpers import ROOT

HEADER = "# SPDX-License-Identifier: Apache-2.0"
NAMED = {"Makefile", "Dockerfile", "ansible.cfg", "pyproject.toml", ".ansible-lint",
         ".yamllint", ".gitignore", ".dockerignore"}


def source_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.split()
    def wanted(path: str) -> bool:
        name = PurePath(path).name
        return "/fixtures/" not in path and (
            path.endswith((".py", ".yml", ".yaml", ".sh")) or name in NAMED
            or path == ".ci/run" or re.match(r"roles/[^/]+/files/[^/]+$", path) is not None)
    return [p for p in listed if wanted(p) and (ROOT / p).is_file()]


def test_one_licence_file():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text() or \
        'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()


def test_every_source_file_carries_the_same_spdx_header():
    files = source_files()
    assert len(files) > 150
    missing = [p for p in files if HEADER not in (ROOT / p).read_text().splitlines()[:3]]
    assert not missing, f"files without '{HEADER}' in their first lines: {missing}"


OTHER_LICENCE = re.compile(r"GNU General Public|GPL-[23]|license: MIT|"
                           r"SPDX-License-Identifier: (?!Apache-2\.0$)", re.IGNORECASE)


def test_no_other_licence_is_named():
    hits = []
    for path in source_files():
        for n, line in enumerate((ROOT / path).read_text().splitlines(), 1):
            if OTHER_LICENCE.search(line) and path != "tests/unit/repo/test_licence.py":
                hits.append(f"{path}:{n}: {line.strip()}")
    assert not hits, hits
    assert OTHER_LICENCE.search("# SPDX-License-Identifier: MIT")
    assert not OTHER_LICENCE.search(HEADER)


def role_metas() -> dict[str, dict]:
    return {p.parent.parent.name: yaml.safe_load(p.read_text())["galaxy_info"]
            for p in sorted((ROOT / "roles").glob("*/meta/main.yml"))}


def test_roles_agree_on_licence_and_ansible_version():
    pin = re.search(r'"ansible-core>=(\d+\.\d+)', (ROOT / "pyproject.toml").read_text()).group(1)
    for role, info in role_metas().items():
        assert info["license"] == "Apache-2.0", role
        assert info["min_ansible_version"] == pin, f"{role}: {info['min_ansible_version']} != {pin}"


def test_platforms_are_what_the_host_side_python_can_run():
    # Debian 13 is what the tests prove; Debian 12 and Ubuntu 24.04 have Python >= 3.11.
    for role, info in role_metas().items():
        platforms = {p["name"]: set(p["versions"]) for p in info["platforms"]}
        assert "trixie" in platforms["Debian"], role
        assert platforms.get("Ubuntu", set()) <= {"noble"}, f"{role}: {platforms}"
