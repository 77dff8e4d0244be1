# SPDX-License-Identifier: Apache-2.0
"""The execution environment's definition (execution-environment.yml, ee/).

`ansible-builder create` turns it into a build context with no registry; the
live build and a run inside the image are tests/integration/test_awx_ee.py.
Here: the pins are the versions the tests run with, the build never reaches a
network (collections are local tarballs, pip has no index), and ee/prepare.py
makes a collection artifact ansible-galaxy accepts.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import yaml
from helpers import ROOT
from packaging.requirements import Requirement

EE = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
sys.path.insert(0, str(ROOT / "ee"))
import prepare  # noqa: E402


def test_ansible_builder_create(tmp_path):
    builder = Path(sys.executable).with_name("ansible-builder")
    proc = subprocess.run(
        [str(builder), "create", "--file", str(ROOT / "execution-environment.yml"),
         "--context", str(tmp_path / "ctx")],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    # ee/offline/ holds only its READMEs in a fresh clone (ee/prepare.py fills it):
    # create works all the same, and the build stops at once saying what to run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No matches for" not in proc.stdout + proc.stderr
    build = tmp_path / "ctx" / "_build"
    assert (build / "requirements.yml").read_text() == \
        (ROOT / "ee" / "requirements.yml").read_text()
    assert "psycopg" in (build / "requirements.txt").read_text()
    dockerfile = (tmp_path / "ctx" / "Dockerfile").read_text()
    assert 'ANSIBLE_INSTALL_REFS="ansible-core==2.19.14 ansible-runner==2.4.3"' in dockerfile
    assert 'ANSIBLE_GALAXY_CLI_COLLECTION_OPTS="--offline"' in dockerfile
    assert 'PYCMD="/usr/bin/python3.11"' in dockerfile
    assert "no-index = true" in dockerfile
    assert "RUN rm -rf /tmp/ee-wheels /etc/pip.conf" in dockerfile
    assert "ee/offline/wheels holds no wheel. Run python3 ee/prepare.py" in dockerfile


def test_no_project_requirements_for_awx_to_download():
    # AWX's project sync installs collections/requirements.yml or requirements.yml;
    # on a closed network that fails: the collections come from the EE instead
    assert not (ROOT / "requirements.yml").exists()
    assert not (ROOT / "collections" / "requirements.yml").exists()
    assert EE["dependencies"]["galaxy"] == "ee/requirements.yml"


def test_pins_are_what_the_tests_run_with():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ranges = {Requirement(d).name: Requirement(d).specifier for d in deps}
    for key, dist in (("ansible_core", "ansible-core"), ("ansible_runner", "ansible-runner")):
        req = Requirement(EE["dependencies"][key]["package_pip"])
        assert req.name == dist and str(req.specifier).startswith("=="), req
        version = str(req.specifier).removeprefix("==")
        assert version in ranges[dist], (dist, version, ranges[dist])
        assert version == importlib.metadata.version(dist), dist
    spec = importlib.util.find_spec("ansible_collections")
    base = Path(next(iter(spec.submodule_search_locations)))
    pins = prepare.pinned_collections()
    for col in pins:
        manifest = json.loads((base / col["ns"] / col["name"] / "MANIFEST.json").read_text())
        assert manifest["collection_info"]["version"] == col["version"], col
        # every dependency of a pinned collection is pinned too (else Galaxy is asked)
        for dep in manifest["collection_info"]["dependencies"]:
            assert any(f"{c['ns']}.{c['name']}" == dep for c in pins), (col, dep)
    used = {"community.docker", "community.postgresql", "community.crypto",
            "community.general", "ansible.posix", "awx.awx"}
    assert used <= {f"{c['ns']}.{c['name']}" for c in pins}


def test_prepare_makes_an_artifact_galaxy_installs(tmp_path):
    col = next(c for c in prepare.pinned_collections() if c["name"] == "posix")
    src = prepare.installed_collection(col["ns"], col["name"])
    art = tmp_path / col["file"]
    prepare.artifact_from_installed(src, art)
    again = tmp_path / "again.tar.gz"
    prepare.artifact_from_installed(src, again)
    assert art.read_bytes() == again.read_bytes()  # reproducible: same inputs, same hash
    with tarfile.open(art) as tar:
        names = tar.getnames()
        files = json.load(tar.extractfile("FILES.json"))["files"]
    assert names[:2] == ["MANIFEST.json", "FILES.json"]
    assert all(f["name"] in names for f in files if f["name"] != ".")
    dest = tmp_path / "installed"
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-galaxy")), "collection", "install",
         "--offline", "--force", "-p", str(dest), str(art)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (dest / "ansible_collections" / "ansible" / "posix" / "plugins").is_dir()


def test_prepare_refuses_a_pin_that_is_not_installed(tmp_path, monkeypatch):
    bad = tmp_path / "requirements.yml"
    bad.write_text("collections:\n  - name: collections/ansible-posix-0.0.1.tar.gz\n"
                   "    type: file\n")
    monkeypatch.setattr(prepare, "EE_DIR", tmp_path)
    monkeypatch.setattr(prepare, "OFFLINE", tmp_path / "offline")
    try:
        prepare.prepare_collections(None)
    except prepare.PrepareError as exc:
        assert "pins ansible.posix 0.0.1" in str(exc) and "--collections-from" in str(exc)
    else:
        raise AssertionError("a pin that differs from the installed collection was accepted")
    bad.write_text("collections:\n  - name: community.docker\n    version: 4.8.5\n")
    try:
        prepare.pinned_collections()
    except prepare.PrepareError as exc:
        assert "type: file" in str(exc)
    else:
        raise AssertionError("a Galaxy entry was accepted")
