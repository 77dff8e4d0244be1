# SPDX-License-Identifier: Apache-2.0
"""Queries and result shaping for bm_pg_stats_info (PostgreSQL >= 13, psycopg 3)."""

from __future__ import annotations

from ansible.module_utils.bm_common import jsonable, short_error

DATABASES_SQL = """
SELECT d.datname AS name,
       pg_database_size(d.datname) AS size_bytes,
       age(d.datfrozenxid) AS xid_age,
       round(100.0 * age(d.datfrozenxid) / 2147483647, 2) AS wraparound_percent
  FROM pg_database d
 WHERE d.datallowconn
 ORDER BY d.datname
"""

TABLES_SQL = """
SELECT t.schemaname AS schema, t.relname AS table,
       t.n_live_tup AS live_tuples, t.n_dead_tup AS dead_tuples,
       CASE WHEN t.n_live_tup + t.n_dead_tup > 0
            THEN round(100.0 * t.n_dead_tup / (t.n_live_tup + t.n_dead_tup), 2)
       END AS dead_percent,
       t.seq_scan, t.seq_tup_read, COALESCE(t.idx_scan, 0) AS idx_scan,
       t.last_vacuum, t.last_autovacuum, t.last_analyze, t.last_autoanalyze,
       pg_table_size(t.relid) AS table_bytes,
       pg_indexes_size(t.relid) AS index_bytes,
       pg_total_relation_size(t.relid) AS total_bytes
  FROM pg_stat_user_tables t
 ORDER BY pg_total_relation_size(t.relid) DESC
 LIMIT %(limit)s
"""

UNUSED_INDEXES_SQL = """
SELECT s.schemaname AS schema, s.relname AS table, s.indexrelname AS index,
       s.idx_scan, pg_relation_size(s.indexrelid) AS index_bytes
  FROM pg_stat_user_indexes s
  JOIN pg_index i ON i.indexrelid = s.indexrelid
 WHERE s.idx_scan = 0
   AND NOT i.indisunique
   AND NOT i.indisprimary
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid)
 ORDER BY pg_relation_size(s.indexrelid) DESC
 LIMIT %(limit)s
"""

MISSING_INDEXES_SQL = """
SELECT t.schemaname AS schema, t.relname AS table, t.seq_scan, t.seq_tup_read,
       COALESCE(t.idx_scan, 0) AS idx_scan, t.n_live_tup AS live_tuples,
       pg_table_size(t.relid) AS table_bytes
  FROM pg_stat_user_tables t
 WHERE t.seq_scan >= %(min_seq_scan)s
   AND t.seq_scan > COALESCE(t.idx_scan, 0)
   AND pg_table_size(t.relid) >= %(min_table_bytes)s
 ORDER BY t.seq_tup_read DESC
 LIMIT %(limit)s
"""

CONNECTIONS_SQL = """
SELECT COALESCE(state, 'background') AS state, count(*) AS count
  FROM pg_stat_activity
 GROUP BY 1
 ORDER BY 1
"""

MAX_CONNECTIONS_SQL = "SELECT current_setting('max_connections')::int AS max_connections"

LONG_QUERIES_SQL = """
SELECT pid, usename AS user, datname AS database, state, wait_event_type,
       extract(epoch FROM now() - query_start) AS seconds,
       left(query, %(query_chars)s) AS query
  FROM pg_stat_activity
 WHERE state <> 'idle' AND pid <> pg_backend_pid() AND query_start IS NOT NULL
   AND backend_type = 'client backend'
 ORDER BY query_start
 LIMIT %(limit)s
"""

CACHE_HIT_SQL = """
SELECT sum(blks_hit) AS blks_hit, sum(blks_read) AS blks_read,
       CASE WHEN sum(blks_hit) + sum(blks_read) > 0
            THEN round(100.0 * sum(blks_hit) / (sum(blks_hit) + sum(blks_read)), 2)
       END AS ratio_percent
  FROM pg_stat_database
 WHERE datname = current_database()
"""

PGSS_INSTALLED_SQL = """
SELECT n.nspname AS schema
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'pg_stat_statements'
"""


def statements_sql(schema):
    """Top statements by mean time. Column names are those of PostgreSQL >= 13."""
    return """
SELECT queryid::text AS queryid, calls,
       round(total_exec_time::numeric, 2) AS total_ms,
       round(mean_exec_time::numeric, 2) AS mean_ms,
       rows,
       left(query, %(query_chars)s) AS query
  FROM "{}".pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY mean_exec_time DESC
 LIMIT %(limit)s
""".format(schema.replace('"', '""'))


def fetch_all(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params or {})
        return [jsonable(dict(row)) for row in cur.fetchall()]


def shape_connections(rows, max_connections):
    by_state = dict((row['state'], int(row['count'])) for row in rows)
    total = sum(by_state.values())
    return dict(by_state=by_state, total=total, max_connections=max_connections,
                used_percent=round(100.0 * total / max_connections, 2)
                if max_connections else None)


class PgStats:
    """Runs the statistic queries on one connection; each part can fail alone."""

    def __init__(self, conn, limit=20, query_chars=300, min_seq_scan=1000,
                 min_table_bytes=10 * 1024 * 1024):
        self.conn = conn
        self.params = dict(limit=limit, query_chars=query_chars, min_seq_scan=min_seq_scan,
                           min_table_bytes=min_table_bytes)
        self.errors = []

    def _try(self, name, func, default=None):
        try:
            return func()
        except Exception as exc:
            self.errors.append(f'{name}: {short_error(exc)}')
            return default

    def server(self):
        row = fetch_all(self.conn, "SELECT current_setting('server_version') AS version, "
                                   "current_setting('server_version_num')::int AS version_num, "
                                   "current_database() AS database, "
                                   "pg_postmaster_start_time() AS started_at, "
                                   "pg_stat_get_db_stat_reset_time("
                                   "(SELECT oid FROM pg_database "
                                   "WHERE datname = current_database())) AS stats_reset")[0]
        return row

    def pg_stat_statements(self):
        rows = fetch_all(self.conn, PGSS_INSTALLED_SQL)
        if not rows:
            return dict(available=False, statements=[],
                        reason='extension pg_stat_statements is not installed in this '
                               'database (CREATE EXTENSION pg_stat_statements)')
        try:
            statements = fetch_all(self.conn, statements_sql(rows[0]['schema']), self.params)
        except Exception as exc:
            return dict(available=False, statements=[],
                        reason='pg_stat_statements is installed but cannot be read (is it in '
                               f'shared_preload_libraries?): {short_error(exc)}')
        return dict(available=True, reason=None, statements=statements)

    def gather(self):
        p = self.params
        conns = self._try('connections', lambda: shape_connections(
            fetch_all(self.conn, CONNECTIONS_SQL),
            fetch_all(self.conn, MAX_CONNECTIONS_SQL)[0]['max_connections']))
        return dict(
            server=self._try('server', self.server),
            databases=self._try('databases', lambda: fetch_all(self.conn, DATABASES_SQL), []),
            tables=self._try('tables', lambda: fetch_all(self.conn, TABLES_SQL, p), []),
            unused_indexes=self._try('unused_indexes', lambda: fetch_all(
                self.conn, UNUSED_INDEXES_SQL, p), []),
            missing_index_candidates=self._try('missing_index_candidates', lambda: fetch_all(
                self.conn, MISSING_INDEXES_SQL, p), []),
            connections=conns,
            long_running_queries=self._try('long_running_queries', lambda: fetch_all(
                self.conn, LONG_QUERIES_SQL, p), []),
            cache_hit=self._try('cache_hit', lambda: fetch_all(self.conn, CACHE_HIT_SQL)[0]),
            pg_stat_statements=self._try(
                'pg_stat_statements', self.pg_stat_statements,
                dict(available=False, statements=[], reason='query failed')),
            errors=self.errors,
        )
