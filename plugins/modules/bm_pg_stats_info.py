#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r'''
---
module: bm_pg_stats_info
short_description: Gather PostgreSQL statistics for the weekly database review
description:
  - Reads, in one connection, what the weekly checklist of the operations manual (section 1.2,
    C(pg_stat_user_tables)) and the slow-API triage (section 3.3) need.
  - Database sizes and transaction ID wraparound age; per-table statistics with sizes, live and
    dead tuples, last (auto)vacuum and (auto)analyze, sequential and index scans.
  - Unused index candidates (never scanned, neither unique nor primary key nor backing a
    constraint) and missing index candidates (large tables read mostly by sequential scans).
  - Connections by state and the longest-running queries from C(pg_stat_activity).
  - Top statements by mean execution time from C(pg_stat_statements) when the extension is
    installed and loaded; otherwise RV(pg_stat_statements.available) is C(false) with a reason.
  - Cache hit ratio of the database.
  - Needs PostgreSQL 13 or later. The session is read-only; the module changes nothing.
version_added: "0.1.0"
author:
  - bmops contributors
options:
  limit:
    description: Maximum number of rows in each list (tables, indexes, queries, statements).
    type: int
    default: 20
  query_chars:
    description: Query texts are cut to this many characters.
    type: int
    default: 300
  min_seq_scan:
    description: A table is a missing-index candidate from this many sequential scans on.
    type: int
    default: 1000
  min_table_bytes:
    description: A table is a missing-index candidate only from this size (bytes) on.
    type: int
    default: 10485760
extends_documentation_fragment:
  - bm_postgres
attributes:
  check_mode:
    support: full
    details: Reads only; the result is the same in check mode.
  diff_mode:
    support: none
requirements:
  - python3-psycopg (psycopg 3)
notes:
  - Statistics are cumulative since the last reset (RV(server.stats_reset)); an index with
    zero scans shortly after a reset is not necessarily unused.
seealso:
  - module: bm_health_info
  - module: community.postgresql.postgresql_info
'''

EXAMPLES = r'''
- name: Gather database statistics
  bm_pg_stats_info:
    db_port: "{{ bm_db_port }}"
    db_name: "{{ bm_db_name }}"
    db_password: "{{ bm_db_password }}"
  register: __weekly_pg

- name: Only the ten largest tables and slowest statements
  bm_pg_stats_info:
    db_password: "{{ bm_db_password }}"
    limit: 10
'''

RETURN = r'''
server:
  description: C(version), C(version_num), C(database), C(started_at), C(stats_reset).
  returned: always
  type: dict
databases:
  description: Every database that accepts connections.
  returned: always
  type: list
  elements: dict
  sample: [{name: backup_mgmt, size_bytes: 8000000, xid_age: 1200, wraparound_percent: 0.0}]
tables:
  description: Largest user tables with statistics and sizes.
  returned: always
  type: list
  elements: dict
  sample:
    - {schema: public, table: backup_jobs, live_tuples: 1000, dead_tuples: 10,
       dead_percent: 0.99, seq_scan: 4, seq_tup_read: 4000, idx_scan: 100,
       last_vacuum: null, last_autovacuum: "2026-11-28T03:10:00+00:00", last_analyze: null,
       last_autoanalyze: null, table_bytes: 180000, index_bytes: 40000, total_bytes: 220000}
unused_indexes:
  description: Indexes never scanned that are not unique, primary key or constraint indexes.
  returned: always
  type: list
  elements: dict
missing_index_candidates:
  description: Tables above O(min_table_bytes) with at least O(min_seq_scan) sequential scans
    and more sequential than index scans.
  returned: always
  type: list
  elements: dict
connections:
  description: C(by_state) (state → count), C(total), C(max_connections), C(used_percent).
  returned: always
  type: dict
long_running_queries:
  description: Active client queries, oldest first, with C(seconds) and the cut query text.
  returned: always
  type: list
  elements: dict
cache_hit:
  description: C(blks_hit), C(blks_read), C(ratio_percent) (null before any block was read).
  returned: always
  type: dict
pg_stat_statements:
  description: C(available), C(reason) (why not available) and C(statements), the top
    statements by mean time (C(queryid), C(calls), C(total_ms), C(mean_ms), C(rows), C(query)).
  returned: always
  type: dict
  sample: {available: false, reason: "extension pg_stat_statements is not installed ...",
           statements: []}
errors:
  description: Queries that failed, C(<part>) then the reason; the other parts are still returned.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_common import (
    connect_error_message,
    pg_argument_spec,
    pg_connect,
    require_psycopg,
)
from ansible.module_utils.bm_pg_stats import PgStats


def argument_spec():
    spec = pg_argument_spec()
    spec.update(
        limit=dict(type='int', default=20),
        query_chars=dict(type='int', default=300),
        min_seq_scan=dict(type='int', default=1000),
        min_table_bytes=dict(type='int', default=10 * 1024 * 1024),
    )
    return spec


def run(module, connect=None):
    p = module.params
    try:
        conn = (connect or pg_connect)(p, 'bmops-pg-stats')
    except Exception as exc:
        module.fail_json(msg=connect_error_message(p, exc))
    try:
        return PgStats(conn, limit=p['limit'], query_chars=p['query_chars'],
                       min_seq_scan=p['min_seq_scan'],
                       min_table_bytes=p['min_table_bytes']).gather()
    finally:
        conn.close()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    require_psycopg(module)
    module.exit_json(changed=False, **run(module))


if __name__ == '__main__':
    main()
