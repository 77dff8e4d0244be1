# SPDX-License-Identifier: Apache-2.0
"""bm_pg_stats_info and plugins/module_utils/bm_pg_stats.py without a server: SQL building,
result shaping, partial failures and main() with patched exit/fail. The same code runs
against a real PostgreSQL in tests/integration/test_pg_stats_live.py."""

from __future__ import annotations

# tests/conftest.py puts plugins/modules on sys.path and plugins/module_utils
# under ansible.module_utils, as Ansible does on the managed host.
import bm_pg_stats_info
import pytest
from ansible.module_utils import bm_pg_stats
from ansible.module_utils.testing import patch_module_args
from helpers.module_harness import ExitJson, FailJson


def test_statements_sql_quotes_the_schema_and_keeps_parameters():
    sql = bm_pg_stats.statements_sql('we"ird')
    assert 'FROM "we""ird".pg_stat_statements' in sql
    assert "%(limit)s" in sql and "%(query_chars)s" in sql
    assert "mean_exec_time" in sql  # PostgreSQL >= 13 column names


@pytest.mark.parametrize(
    ("rows", "max_connections", "expected"),
    [
        ([{"state": "active", "count": 2}, {"state": "idle", "count": 8}], 100,
         {"by_state": {"active": 2, "idle": 8}, "total": 10, "max_connections": 100,
          "used_percent": 10.0}),
        ([], 100, {"by_state": {}, "total": 0, "max_connections": 100, "used_percent": 0.0}),
        ([{"state": "active", "count": 1}], None,
         {"by_state": {"active": 1}, "total": 1, "max_connections": None, "used_percent": None}),
    ],
)
def test_shape_connections(rows, max_connections, expected):
    assert bm_pg_stats.shape_connections(rows, max_connections) == expected


class ScriptedConn:
    """Answers queries by a substring of the SQL; raises for the ones listed in fail."""

    def __init__(self, answers, fail=()):
        self.answers = answers
        self.fail = fail
        self.closed = False
        self.sql = []

    def cursor(self):
        conn = self

        class Cursor:
            rows = None

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def execute(self, sql, params=None):
                conn.sql.append((sql, params))
                for key in conn.fail:
                    if key in sql:
                        raise RuntimeError(f"{key} failed")
                for key, rows in conn.answers.items():
                    if key in sql:
                        self.rows = rows
                        return
                self.rows = []

            def fetchall(self):
                return self.rows

        return Cursor()

    def close(self):
        self.closed = True


ANSWERS = {
    "server_version": [{"version": "15.10", "version_num": 150010, "database": "backup_mgmt",
                        "started_at": None, "stats_reset": None}],
    "FROM pg_database d": [{"name": "backup_mgmt", "size_bytes": 8000, "xid_age": 10,
                            "wraparound_percent": 0}],
    "FROM pg_stat_user_tables t\n ORDER BY": [{"schema": "public", "table": "backup_jobs"}],
    "FROM pg_stat_user_indexes": [{"index": "ix_unused"}],
    "seq_scan >=": [],
    "GROUP BY 1": [{"state": "active", "count": 1}],
    "max_connections": [{"max_connections": 100}],
    "pg_backend_pid()": [],
    "FROM pg_stat_database": [{"blks_hit": 10, "blks_read": 0, "ratio_percent": 100}],
    "pg_extension": [],
}


def test_gather_without_pg_stat_statements():
    stats = bm_pg_stats.PgStats(ScriptedConn(ANSWERS)).gather()
    assert stats["pg_stat_statements"]["available"] is False
    assert "CREATE EXTENSION pg_stat_statements" in stats["pg_stat_statements"]["reason"]
    assert stats["connections"]["total"] == 1
    assert stats["unused_indexes"] == [{"index": "ix_unused"}]
    assert stats["errors"] == []


def test_gather_pg_stat_statements_installed_but_not_loaded():
    answers = dict(ANSWERS, pg_extension=[{"schema": "public"}])
    conn = ScriptedConn(answers, fail=('"public".pg_stat_statements',))
    pgss = bm_pg_stats.PgStats(conn).gather()["pg_stat_statements"]
    assert pgss["available"] is False
    assert "shared_preload_libraries" in pgss["reason"]


def test_gather_pg_stat_statements_available_and_params_passed():
    answers = dict(ANSWERS, pg_extension=[{"schema": "public"}])
    answers['"public".pg_stat_statements'] = [{"queryid": "1", "mean_ms": 2.5}]
    conn = ScriptedConn(answers)
    stats = bm_pg_stats.PgStats(conn, limit=5, query_chars=50).gather()
    assert stats["pg_stat_statements"] == {"available": True, "reason": None,
                                           "statements": [{"queryid": "1", "mean_ms": 2.5}]}
    params = next(p for sql, p in conn.sql if "pg_stat_statements" in sql and p)
    assert params["limit"] == 5 and params["query_chars"] == 50


def test_one_failing_query_does_not_hide_the_others():
    stats = bm_pg_stats.PgStats(ScriptedConn(ANSWERS, fail=("FROM pg_stat_user_indexes",))
                                ).gather()
    assert stats["unused_indexes"] == []
    assert stats["errors"] == ["unused_indexes: FROM pg_stat_user_indexes failed"]
    assert stats["databases"][0]["name"] == "backup_mgmt"


def test_main_connection_error_is_one_sentence(module_exit, monkeypatch):
    def refuse(params, app):
        raise OSError('connection failed: connection to server at "10.0.0.5", port 5433 '
                      'failed: FATAL:  password authentication failed for user "ops"')

    monkeypatch.setattr(bm_pg_stats_info, "pg_connect", refuse)
    args = {"db_host": "10.0.0.5", "db_port": 5433, "db_user": "ops", "db_password": "pw"}
    with patch_module_args(args), pytest.raises(FailJson) as exc:
        bm_pg_stats_info.main()
    assert exc.value.args[0]["msg"] == (
        "Cannot connect to PostgreSQL at 10.0.0.5:5433 as ops: FATAL:  password authentication "
        'failed for user "ops". Check bm_db_password, that the db container is running and '
        "that port 5433 is published on the host.")


def test_main_returns_unchanged_facts_in_check_mode(module_exit, monkeypatch):
    conn = ScriptedConn(ANSWERS)
    monkeypatch.setattr(bm_pg_stats_info, "pg_connect", lambda params, app: conn)
    with patch_module_args({"db_password": "pw", "_ansible_check_mode": True}), \
            pytest.raises(ExitJson) as exc:
        bm_pg_stats_info.main()
    result = exc.value.args[0]
    assert result["changed"] is False and conn.closed
    assert set(result) >= {"server", "databases", "tables", "unused_indexes",
                           "missing_index_candidates", "connections", "long_running_queries",
                           "cache_hit", "pg_stat_statements", "errors"}
    assert bm_pg_stats_info.argument_spec()["db_password"]["no_log"] is True
