# SPDX-License-Identifier: Apache-2.0
"""Exit codes and the one exception type every command raises."""

from __future__ import annotations

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3


class ToolError(Exception):
    """A failure with a sentence an admin understands; exit code attached."""

    def __init__(self, message: str, code: int = EXIT_FAIL):
        super().__init__(message)
        self.code = code


def fail_with(payload: dict, message: str) -> ToolError:
    """A failure that still prints ``payload`` (the command's result) with the error."""
    err = ToolError(message)
    err.payload = payload
    return err
