# SPDX-License-Identifier: Apache-2.0
"""Shared pytest set-up for bmops.

Custom modules import their shared code as ``ansible.module_utils.bm_*`` (that
is how Ansible ships ``plugins/module_utils`` to the managed host). For tests we
make the same import path resolve to the project's directory, and put the
modules and filter plugins on ``sys.path`` so tests can import them by name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ansible.module_utils

ROOT = Path(__file__).resolve().parent.parent

for sub in ("plugins/modules", "filter_plugins"):
    path = str(ROOT / sub)
    if path not in sys.path:
        sys.path.insert(0, path)

_utils = str(ROOT / "plugins" / "module_utils")
if _utils not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_utils)
