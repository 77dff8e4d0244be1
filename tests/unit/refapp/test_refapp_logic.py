# SPDX-License-Identifier: Apache-2.0
"""Pure logic of the reference app (tests/refapp): no containers, no servers."""

from __future__ import annotations

import logging
import random
import sys
import threading

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "tests" / "refapp"))

from refapp import config, health, jobs, logs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DEBUG", logging.DEBUG),
        ("debug\n", logging.DEBUG),
        ("  Info ", logging.INFO),
        ("WARNING", logging.WARNING),
        ("warn", logging.WARNING),
        ("ERROR", logging.ERROR),
        ("CRITICAL", logging.CRITICAL),
        ("LOUD", None),
        ("", None),
        ("10", None),
        (None, None),
    ],
)
def test_parse_level(text, expected):
    assert logs.parse_level(text) == expected


@pytest.mark.parametrize(
    ("results", "status", "body"),
    [
        (
            {"db": "ok", "redis": "ok"},
            200,
            {"status": "ok", "checks": {"db": "ok", "redis": "ok"}},
        ),
        (
            {"db": "OperationalError: refused", "redis": "ok"},
            503,
            {
                "status": "fail",
                "failed": ["db"],
                "checks": {"db": "OperationalError: refused", "redis": "ok"},
            },
        ),
        (
            {"redis": "timeout after 2s", "db": "x"},
            503,
            {
                "status": "fail",
                "failed": ["db", "redis"],
                "checks": {"redis": "timeout after 2s", "db": "x"},
            },
        ),
    ],
)
def test_ready_response(results, status, body):
    assert health.ready_response(results) == (status, body)


def test_run_checks_reports_failures_and_never_waits_past_the_deadline():
    def slow():
        import time

        time.sleep(5)

    def broken():
        raise ConnectionError("Connection refused\nmore detail")

    results = health.run_checks({"ok": lambda: None, "slow": slow, "broken": broken}, 0.3)
    assert results == {
        "ok": "ok",
        "slow": "timeout after 0.3s",
        "broken": "ConnectionError: Connection refused",
    }


@pytest.mark.parametrize(
    ("ratio", "draw", "fails"),
    [
        (0.0, 0.0, False),
        (0.0, 0.999, False),
        (1.0, 0.0, True),
        (1.0, 0.999999, True),
        (0.5, 0.49, True),
        (0.5, 0.5, False),
    ],
)
def test_should_fail(ratio, draw, fails):
    assert jobs.should_fail(ratio, draw) is fails


def test_outcome_always_fails_at_ratio_one_and_never_at_zero():
    rng = random.Random(7)
    assert {jobs.outcome(1.0, rng)[0] for _ in range(200)} == {"failed"}
    failed = jobs.outcome(1.0, rng)
    assert failed == ("failed", 0, jobs.FAILURE_TEXT)
    successes = [jobs.outcome(0.0, rng) for _ in range(200)]
    assert {status for status, _, _ in successes} == {"success"}
    assert all(size > 0 and error is None for _, size, error in successes)


def test_summary_counts_every_status():
    assert jobs.summary([("failed", 3), ("success", 9)]) == {
        "queued": 0,
        "running": 0,
        "success": 9,
        "failed": 3,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, 0.0), ("", 0.0), ("0", 0.0), ("0.25", 0.25), ("1.0", 1.0)],
)
def test_parse_ratio(text, expected):
    assert config.parse_ratio(text) == expected


@pytest.mark.parametrize("text", ["half", "-0.1", "1.5"])
def test_parse_ratio_rejects(text):
    with pytest.raises(config.ConfigError, match="JOB_FAILURE_RATIO"):
        config.parse_ratio(text)


def test_read_secret_from_value_or_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    assert config.read_secret({"DB_PASSWORD": "plain"}, "DB_PASSWORD") == "plain"
    assert config.read_secret({"DB_PASSWORD_FILE": str(secret)}, "DB_PASSWORD") == "s3cret"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "set DB_PASSWORD or DB_PASSWORD_FILE"),
        ({"DB_PASSWORD": "a", "DB_PASSWORD_FILE": "/x"}, "not both"),
        ({"DB_PASSWORD_FILE": "/nonexistent/pw"}, "cannot read DB_PASSWORD_FILE"),
    ],
)
def test_read_secret_errors(env, message):
    with pytest.raises(config.ConfigError, match=message):
        config.read_secret(env, "DB_PASSWORD")


def test_load_defaults_and_broker_url_quotes_the_password():
    settings = config.load({"DB_PASSWORD": "p", "REDIS_PASSWORD": "a@b/c", "REDIS_HOST": "r"})
    assert (settings.db_host, settings.db_port, settings.db_name) == ("db", 5432, "backup_mgmt")
    assert settings.job_interval_seconds == 30.0
    assert settings.log_level_file == "/run/backup-mgmt/log_level"
    assert settings.broker_url == "redis://:a%40b%2Fc@r:6379/0"
    assert "a@b/c" not in repr(settings)


def test_line_format_is_one_line_with_utc_time_level_and_component():
    formatter = logs.LineFormatter("backend")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "first\nsecond", None, None)
    record.created = 1795867200.0  # 2026-11-28T12:00:00Z
    assert formatter.format(record) == "2026-11-28T12:00:00Z ERROR backend first | second"


@pytest.fixture
def root_logger():
    """logs.setup() configures the process: undo it after the test."""
    root = logging.getLogger()
    saved = root.level, list(root.handlers), sys.excepthook, threading.excepthook
    yield root
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    sys.excepthook, threading.excepthook = saved[2], saved[3]
    logging.captureWarnings(False)


def test_reload_level(tmp_path, root_logger, capsys):
    logs.setup("backend", "INFO")
    level_file = tmp_path / "log_level"
    level_file.write_text("debug\n")
    logs.reload_level(str(level_file))
    assert root_logger.level == logging.DEBUG
    level_file.write_text("LOUD\n")
    logs.reload_level(str(level_file))
    assert root_logger.level == logging.DEBUG
    level_file.write_text("ERROR\n")
    logs.reload_level(str(level_file))
    assert root_logger.level == logging.ERROR
    logs.reload_level(str(tmp_path / "missing"))
    assert root_logger.level == logging.ERROR
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "INFO backend log level changed to DEBUG",
        "WARNING backend unknown log level 'LOUD' in " + str(level_file) + ", keeping DEBUG",
        "INFO backend log level changed to ERROR",  # shown although the level is now ERROR
        "WARNING backend cannot read log level file "
        + str(tmp_path / "missing")
        + " (No such file or directory), keeping ERROR",
    ]
