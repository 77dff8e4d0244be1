# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.restore_executor: only scratch databases are ever created or dropped.

Restores themselves need PostgreSQL: tests/integration/test_backup_tool_live.py.
"""

from __future__ import annotations

import pytest
from bmops_backup.config import DEFAULTS
from bmops_backup.exceptions import ToolError
from bmops_backup.restore_executor import check_scratch_name


def test_scratch_names_are_guarded():
    cfg = dict(DEFAULTS)
    with pytest.raises(ToolError):
        check_scratch_name(cfg, "backup_mgmt")
    check_scratch_name(cfg, "bmops_scratch_restore")
