# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.dbprops: the SQL that gives a scratch database the live one's owner,
settings and ACL, and the PGDATA free-space check (against a stand-in for the db
container that answers `df`).  The real round trip: tests/integration/test_backup_stack.py."""

from __future__ import annotations

import sys

import pytest
from bmops_backup.config import DEFAULTS
from bmops_backup.dbprops import apply_sql, check_pgdata_space, create_sql
from bmops_backup.exceptions import ToolError

PROPS = {"owner": "app owner", "connection_limit": 50,
         "settings": [["", "work_mem=7MB"], ["", 'search_path="$user", public'],
                      ["reader", "statement_timeout=5s"]],
         "acl_default": False,
         "grants": [["PUBLIC", "CONNECT", False], ["reader", "TEMPORARY", True]]}


def test_scratch_is_created_with_the_owner_and_given_everything_else_after_the_load():
    assert create_sql("bmops_scratch_restore", PROPS) == \
        'CREATE DATABASE "bmops_scratch_restore" OWNER "app owner";'
    sql = apply_sql("bmops_scratch_restore", PROPS).splitlines()
    assert sql == [
        'ALTER DATABASE "bmops_scratch_restore" OWNER TO "app owner";',
        'ALTER DATABASE "bmops_scratch_restore" CONNECTION LIMIT 50;',
        "ALTER DATABASE \"bmops_scratch_restore\" SET \"work_mem\" = '7MB';",
        "ALTER DATABASE \"bmops_scratch_restore\" SET \"search_path\" = '$user', 'public';",
        "ALTER ROLE \"reader\" IN DATABASE \"bmops_scratch_restore\" SET "
        "\"statement_timeout\" = '5s';",
        'REVOKE ALL ON DATABASE "bmops_scratch_restore" FROM PUBLIC;',
        'GRANT CONNECT ON DATABASE "bmops_scratch_restore" TO PUBLIC;',
        'GRANT TEMPORARY ON DATABASE "bmops_scratch_restore" TO "reader" WITH GRANT OPTION;',
    ]


def test_a_default_acl_is_left_default():
    sql = apply_sql("bmops_scratch_x", {**PROPS, "settings": [], "acl_default": True})
    assert "REVOKE" not in sql and "GRANT" not in sql


@pytest.fixture
def df_cfg(tmp_path):
    fake = tmp_path / "fake"
    fake.write_text("import sys\n"
                    "print('Filesystem 1024-blocks Used Available Capacity Mounted on')\n"
                    "print('/dev/sdz 1000 900 100 90% /var/lib/postgresql/data')\n")
    return {**DEFAULTS, "exec_prefix": [sys.executable, str(fake)], "_wrapper": [],
            "_exec": None, "container": None, "docker": "false"}


def test_pgdata_space_is_checked_against_the_need(df_cfg):
    assert check_pgdata_space(df_cfg, 100 * 1024, "x") == {"free_bytes": 102400,
                                                            "needed_bytes": 102400}
    with pytest.raises(ToolError) as exc:
        check_pgdata_space(df_cfg, 200 * 1024, "scratch database bmops_scratch_restore")
    msg = str(exc.value)
    assert "PGDATA volume for scratch database bmops_scratch_restore" in msg
    assert "need 204800 bytes" in msg and "102400 bytes free" in msg
