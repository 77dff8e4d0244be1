# SPDX-License-Identifier: Apache-2.0
"""`bmops` from a plain (non-editable) install of the wheel, with no checkout.

The working tree is copied, a wheel is built from the copy offline (`pip wheel
--no-deps --no-build-isolation`, with the setuptools the `test` extra brings)
and installed with `--no-deps` into a fresh virtualenv. That virtualenv sees
the dependencies (ansible, ansible-runner) of this one through a .pth line,
not its editable bmops, so every `bmops` below is the installed one, run from
a directory that is no project. Nothing here contacts a server or changes the
machine: the one real run stops at a controller-side assert, and its only
host is localhost with an interpreter that does not exist, so no module could
run there even if the play went on.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import ROOT
from packaging.version import Version

# What the wheel must carry (pyproject.toml, [tool.setuptools.package-data]):
# ansible.cfg, the paths it names, the inventories and the rulebooks, whole; nothing else.
SHIPPED_FILES = ("ansible.cfg",)
SHIPPED_DIRS = ("playbooks", "roles", "plugins", "filter_plugins", "inventory", "extensions",
                "i18n")
# Left out of the copy: local state at the top of the tree, bytecode anywhere.
TOP_IGNORE = {".git", ".venv", ".cache", ".pytest_cache", ".ruff_cache", "build", "dist",
              "reports", "bmops.egg-info"}
# Only localhost, and no Python there: any module (copy, command, ...) fails
# before it could touch this machine; controller-side actions still run.
INVENTORY = """\
bm_app:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: /nonexistent/bin/python3
"""


def sh(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False,
                          timeout=120, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """bmops installed from its wheel: src (the copy built), wheel, venv,
    shipped (the project inside it), and env for a shell standing in workdir,
    a directory with no project."""
    if Version(importlib.metadata.version("setuptools")) < Version("70.1"):
        pytest.fail("setuptools >= 70.1 builds wheels offline; `make setup` installs it "
                    "(pyproject.toml, test extra)")
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=lambda d, names: [
        n for n in names if n == "__pycache__" or (Path(d) == ROOT and n in TOP_IGNORE)])
    proc = sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "--no-index", "-q", "-w", base / "dist", src])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (base / "dist").glob("bmops-*.whl")

    venv = base / "venv"
    proc = sh([sys.executable, "-m", "venv", "--without-pip", venv])
    assert proc.returncode == 0, proc.stderr
    vpy = venv / "bin" / "python"
    purelib = sh([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    Path(purelib.stdout.strip(), "_bmops_test_deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    proc = sh([sys.executable, "-m", "pip", "--python", vpy, "install", "--no-deps",
               "--no-index", "-q", wheel])
    assert proc.returncode == 0, proc.stdout + proc.stderr

    workdir = base / "elsewhere"
    workdir.mkdir()
    (workdir / "hosts.yml").write_text(INVENTORY)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BMOPS_", "ANSIBLE_", "PYTHON", "VIRTUAL_ENV"))}
    # ansible-playbook comes with the dependencies, from this virtualenv's bin
    env["PATH"] = os.pathsep.join([str(venv / "bin"), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    env["XDG_CACHE_HOME"] = str(base / "xdg")
    (shipped,) = venv.glob("lib/python3*/site-packages/bmops/project")
    return SimpleNamespace(src=src, wheel=wheel, venv=venv, shipped=shipped, env=env,
                           workdir=workdir)


def bmops(installed, *args) -> subprocess.CompletedProcess:
    return sh([installed.venv / "bin" / "bmops", *args], cwd=installed.workdir,
              env=installed.env)


def test_wheel_carries_the_project_and_nothing_else(installed):
    src = installed.src
    expected = {f"bmops/project/{name}" for name in SHIPPED_FILES}
    expected |= {f"bmops/project/{p.relative_to(src)}" for d in SHIPPED_DIRS
                 for p in (src / d).rglob("*") if p.is_file()}
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {n for n in names if n.startswith("bmops/project/")} == expected
    assert "bmops/project/roles/bmops_common/defaults/main.yml" in expected


def test_list_from_any_directory(installed):
    proc = bmops(installed, "list")
    assert proc.returncode == 0, proc.stderr
    playbooks = installed.src / "playbooks"
    assert proc.stdout.split() == sorted(p.stem for p in playbooks.glob("*.yml"))
    assert "daily_check" in proc.stdout.split()


def test_the_installed_bmops_is_the_one_running(installed):
    proc = sh([installed.venv / "bin" / "python", "-c", "import bmops; print(bmops.__file__)"],
              cwd=installed.workdir, env=installed.env)
    assert proc.stdout.strip() == str(installed.shipped.parent / "__init__.py"), proc.stderr


@pytest.mark.parametrize("procedure", ["daily_check", "weekly_check", "site"])
def test_run_syntax_check_resolves_roles_and_modules(installed, procedure):
    """Roles (roles_path) and the custom modules (library) are found only
    through the shipped ansible.cfg: playbooks/ has neither beside it."""
    proc = bmops(installed, "run", procedure, "-i", "hosts.yml", "--syntax-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"project: {installed.shipped} (installed package)" in proc.stdout
    assert "status: successful rc=0" in proc.stdout
    assert not list(installed.shipped.rglob(".cache")), "state written into the package"


def test_syntax_check_fails_without_the_cfg_paths(installed, tmp_path):
    """The control for the test above: the same project with an empty
    ansible.cfg finds neither, and bmops shows ansible-playbook's error."""
    bare = tmp_path / "bare"
    shutil.copytree(installed.shipped, bare)
    (bare / "ansible.cfg").write_text("[defaults]\n")
    proc = bmops(installed, "run", "daily_check", "-i", "hosts.yml", "--syntax-check",
                 "--project-dir", bare)
    assert proc.returncode != 0
    assert re.search(r"\[ERROR\]: (the role '\w+' was not found|couldn't resolve module)",
                     proc.stdout), proc.stdout


def test_run_a_procedure_from_the_installed_project(installed):
    """log_level with a bad level: the role (and bmops_common, its dependency)
    load from the shipped roles and the role's own check of the level (its
    argument specs, or its preflight assert) fails on the controller: rc 2, as
    AWX shows it. Runs after the syntax checks above, in the same artifact
    directory."""
    proc = bmops(installed, "run", "log_level", "-i", "hosts.yml", "-e", "log_level=LOUD")
    out = proc.stdout
    assert proc.returncode == 2, out + proc.stderr
    assert "PLAY Change the backend log level" in out
    assert "FAILED      localhost: " in out and "LOUD" in out
    assert "changed" not in out.replace("changed=0", "")

    shipped = installed.shipped
    artifacts = Path(out.split("artifacts: ", 1)[1].splitlines()[0])
    assert artifacts.parent == Path(installed.env["XDG_CACHE_HOME"], "bmops", "runner",
                                    "artifacts")
    command = json.loads((artifacts / "command").read_text())
    assert command["cwd"] == str(shipped)
    assert command["env"]["ANSIBLE_CONFIG"] == str(shipped / "ansible.cfg")
    assert "--syntax-check" not in command["command"]
    events = [json.loads(p.read_text()) for p in (artifacts / "job_events").glob("*.json")]
    (failed,) = [e["event_data"] for e in events if e.get("event") == "runner_on_failed"]
    assert failed["role"] == "log_level"
    assert failed["task_action"] in ("ansible.builtin.validate_argument_spec",
                                     "ansible.builtin.assert")
    assert Path(failed["task_path"]).is_relative_to(shipped)
    assert "LOUD" in json.dumps(failed["res"])
    assert not list(shipped.rglob(".cache")), "state written into the installed package"


def test_the_shipped_cfg_finds_the_filter_plugins(installed):
    """Filters are resolved when a task templates them, which the runs above
    do not reach; ask ansible with the cfg bmops passes."""
    cfg = installed.shipped / "ansible.cfg"
    proc = sh(["ansible", "localhost", "-i", "localhost,", "-c", "local", "-m",
               "ansible.builtin.debug", "-a",
               "msg={{ 'MemTotal: 2048 kB\nMemAvailable: 1024 kB' | bm_triage_meminfo }}"],
              cwd=installed.workdir, env={**installed.env, "ANSIBLE_CONFIG": str(cfg)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "available_percent: 50.0" in proc.stdout
