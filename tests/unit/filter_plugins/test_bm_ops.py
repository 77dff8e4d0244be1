# SPDX-License-Identifier: Apache-2.0
"""Tables for filter_plugins/bm_ops.py (log-level read-back, VACUUM report, Docker log options)."""

from __future__ import annotations

# tests/conftest.py puts filter_plugins on sys.path.
import bm_ops
import pytest


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], {"level": None, "line": None, "warning": None}),
        (["2026-11-28T12:00:00Z INFO backend log level changed to DEBUG"],
         {"level": "DEBUG", "line": "2026-11-28T12:00:00Z INFO backend log level changed to DEBUG",
          "warning": None}),
        (["x INFO backend log level changed to DEBUG", "x INFO backend log level unchanged: INFO"],
         {"level": "INFO", "line": "x INFO backend log level unchanged: INFO", "warning": None}),
        (["x WARNING backend unknown log level 'LOUD' in /run/backup-mgmt/log_level, keeping INFO"],
         {"level": None,
          "line": "x WARNING backend unknown log level 'LOUD' in /run/backup-mgmt/log_level, "
                  "keeping INFO",
          "warning": "unknown log level 'LOUD' in /run/backup-mgmt/log_level, keeping INFO"}),
        (["\x1b[2Kx WARNING backend cannot read log level file /x (denied), keeping INFO",
          "x INFO backend log level changed to ERROR"],
         {"level": "ERROR", "line": "x INFO backend log level changed to ERROR", "warning": None}),
    ],
)
def test_log_level_readback(lines, expected):
    assert bm_ops.log_level_readback(lines) == expected


def stats(tables, size):
    return {"server": {"database": "backup_mgmt"},
            "databases": [{"name": "backup_mgmt", "size_bytes": size},
                          {"name": "postgres", "size_bytes": 1}],
            "tables": tables}


def test_vacuum_report_pairs_tables_and_sums():
    before = stats([
        {"schema": "public", "table": "a", "dead_tuples": 10, "live_tuples": 5,
         "total_bytes": 100},
        {"schema": "public", "table": "b", "dead_tuples": 15000, "live_tuples": 5000,
         "total_bytes": 5000}], 9000)
    after = stats([
        {"schema": "public", "table": "b", "dead_tuples": 0, "live_tuples": 5000,
         "total_bytes": 4000, "last_vacuum": "t1", "last_analyze": "t2"},
        {"schema": "public", "table": "a", "dead_tuples": 0, "live_tuples": 5, "total_bytes": 100},
        {"schema": "public", "table": "new", "dead_tuples": 0, "live_tuples": 1,
         "total_bytes": 8}], 8000)
    report = bm_ops.vacuum_report(before, after)
    assert [t["table"] for t in report["tables"]] == ["public.b", "public.a", "public.new"]
    assert report["tables"][0] == {"table": "public.b", "dead_before": 15000, "dead_after": 0,
                                   "live_after": 5000, "bytes_before": 5000, "bytes_after": 4000,
                                   "last_vacuum": "t1", "last_analyze": "t2"}
    assert report["tables"][2]["dead_before"] is None
    assert (report["dead_tuples_before"], report["dead_tuples_after"]) == (15010, 0)
    assert (report["database_bytes_before"], report["database_bytes_after"]) == (9000, 8000)
    assert bm_ops.vacuum_report({}, {})["tables"] == []


def test_docker_log_config_issues():
    expected = {"type": "json-file", "config": {"max-size": "50m", "max-file": 7}}
    inspect = [
        {"Name": "/ok", "HostConfig": {"LogConfig": {
            "Type": "json-file", "Config": {"max-size": "50m", "max-file": "7"}}}},
        {"Name": "/old", "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {}}}},
        {"Name": "/journal", "HostConfig": {"LogConfig": {
            "Type": "journald", "Config": {"max-size": "50m", "max-file": "7"}}}},
    ]
    assert bm_ops.docker_log_config_issues(inspect, expected) == [
        "old: log option max-file=None, expected 7",
        "old: log option max-size=None, expected 50m",
        "journal: log driver journald, expected json-file",
    ]
    assert bm_ops.docker_log_config_issues([], expected) == []


def test_filter_names():
    assert set(bm_ops.FilterModule().filters()) == {
        "bm_log_level_readback", "bm_vacuum_report", "bm_docker_log_config_issues"}
