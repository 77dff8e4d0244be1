# SPDX-License-Identifier: Apache-2.0
"""Exceptions that stand for a module's exit_json / fail_json in unit tests.

The fixture ``module_exit`` (tests/unit/conftest.py) makes AnsibleModule raise them.
"""


class ExitJson(Exception):
    """module.exit_json() was called; args[0] is its result."""


class FailJson(Exception):
    """module.fail_json() was called; args[0] is its result."""
