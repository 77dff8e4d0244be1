# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by every test layer (tests/README.md): the repository root,
and (module_harness) the in-process runner of an Ansible module's main()."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
