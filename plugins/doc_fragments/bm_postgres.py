# SPDX-License-Identifier: Apache-2.0
"""Documentation of the PostgreSQL connection options the bmops modules share.

Used as ``extends_documentation_fragment: [bm_postgres]``; the matching
argument spec is ``pg_argument_spec()`` in ``module_utils/bm_common.py``.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  db_host:
    description: PostgreSQL host.
    type: str
    default: 127.0.0.1
  db_port:
    description: PostgreSQL port (C(bm_db_port)).
    type: int
    default: 5432
  db_name:
    description: Application database (C(bm_db_name)).
    type: str
    default: backup_mgmt
  db_user:
    description: Database user (C(bm_db_user)); a superuser or a member of C(pg_monitor).
    type: str
    default: postgres
  db_password:
    description: Database password (C(bm_db_password)).
    type: str
  connect_timeout:
    description: Connection timeout in seconds.
    type: int
    default: 5
"""
