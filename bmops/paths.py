# SPDX-License-Identifier: Apache-2.0
"""Where the Ansible project and the run state of ``bmops`` live.

The project is the directory ansible-runner runs from, as AWX does: it holds
``ansible.cfg`` and the paths that file names relative to itself (roles,
plugins, filter plugins, the demo inventory) plus ``playbooks/``. The first of
these that is a project wins:

1. ``--project-dir DIR``;
2. ``$BMOPS_PROJECT_DIR``;
3. the current directory (a checkout, or a copy an operator maintains);
4. the copy shipped in the installed package (``bmops/project/``, what a
   plain ``pip install .`` brings);
5. the checkout this package is imported from (editable install, ``python -m
   bmops`` in the tree).

The ansible-runner artifacts (events, stdout, the fact cache ansible-runner
keeps per run) go to ``--artifacts`` or ``$BMOPS_ARTIFACTS``, else to
``.cache/runner`` in the project when it is a checkout the user can write to,
as before; never into the installed package: then to
``$XDG_CACHE_HOME/bmops/runner`` (default ``~/.cache/bmops/runner``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ENV = "BMOPS_PROJECT_DIR"
ARTIFACTS_ENV = "BMOPS_ARTIFACTS"

PACKAGE_DIR = Path(__file__).resolve().parent
# Filled by the wheel (pyproject.toml, [tool.setuptools] package-data); absent
# in a checkout, where the project is PACKAGE_DIR's parent.
SHIPPED_DIR = PACKAGE_DIR / "project"
SOURCE_DIR = PACKAGE_DIR.parent

ORIGIN_OPTION = "--project-dir"
ORIGIN_ENV = PROJECT_ENV
ORIGIN_CWD = "current directory"
ORIGIN_SHIPPED = "installed package"
ORIGIN_SOURCE = "checkout of the bmops package"


class ProjectError(ValueError):
    """No usable project directory."""


def is_project(path: Path) -> bool:
    """True when PATH holds ``ansible.cfg`` and ``playbooks/``."""
    return (path / "ansible.cfg").is_file() and (path / "playbooks").is_dir()


@dataclass(frozen=True)
class Project:
    path: Path
    origin: str

    @property
    def ansible_cfg(self) -> Path:
        return self.path / "ansible.cfg"

    @property
    def playbook_dir(self) -> Path:
        return self.path / "playbooks"

    @property
    def shipped(self) -> bool:
        return self.origin == ORIGIN_SHIPPED

    def procedures(self) -> list[str]:
        """Names of the procedures (playbooks) of this project."""
        return sorted(p.stem for p in self.playbook_dir.glob("*.yml"))

    def describe(self) -> str:
        return f"{self.path} ({self.origin})"


def _checked(path: str, origin: str) -> Project:
    resolved = Path(path).expanduser().resolve()
    if not is_project(resolved):
        raise ProjectError(f"{origin} {path!r}: {resolved} is not a bmops project "
                           "(it needs ansible.cfg and playbooks/)")
    return Project(resolved, origin)


def find_project(option: str | None = None, environ: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> Project:
    """The project to run from, in the order the module docstring gives."""
    environ = os.environ if environ is None else environ
    if option:
        return _checked(option, ORIGIN_OPTION)
    if environ.get(PROJECT_ENV):
        return _checked(environ[PROJECT_ENV], ORIGIN_ENV)
    here = (cwd or Path.cwd()).resolve()
    for path, origin in ((here, ORIGIN_CWD), (SHIPPED_DIR, ORIGIN_SHIPPED),
                         (SOURCE_DIR, ORIGIN_SOURCE)):
        if is_project(path):
            return Project(path, origin)
    raise ProjectError(f"no bmops project in {here} and none installed with the package; "
                       f"pass --project-dir or set {PROJECT_ENV}")


def user_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/bmops``, default ``~/.cache/bmops``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "bmops"


def default_artifacts(project: Project, environ: Mapping[str, str] | None = None) -> Path:
    """``$BMOPS_ARTIFACTS``; else ``.cache/runner`` in the project if it is a
    checkout the user can write to; else :func:`user_cache_dir` ``/runner``
    (never the installed package, even for root)."""
    environ = os.environ if environ is None else environ
    if environ.get(ARTIFACTS_ENV):
        return Path(environ[ARTIFACTS_ENV]).expanduser()
    if not project.shipped and os.access(project.path, os.W_OK):
        return project.path / ".cache" / "runner"
    return user_cache_dir(environ) / "runner"
