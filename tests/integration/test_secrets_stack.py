# SPDX-License-Identifier: Apache-2.0
"""No secret reaches a job event, even at -vvv (what AWX stores and shows).

The database and Redis passwords come from the demo vault file; the SMTP
password is passed as an extra variable, the way an AWX credential would.
Every event of the run (serialised whole) and the run's stdout are searched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VAULT = yaml.safe_load((ROOT / "inventory/demo/group_vars/bm_app/vault.yml").read_text())
SMTP_PASSWORD = "smtp-secret-never-logged-7f3a"  # noqa: S105 (a test value)
SECRETS = [VAULT["bm_db_password"], VAULT["bm_redis_password"], SMTP_PASSWORD]


def assert_no_secret(result) -> None:
    assert result.events, "the run produced no events"
    blobs = [json.dumps(ev) for ev in result.events] + [result.stdout]
    for secret in SECRETS:
        leaks = [blob[:300] for blob in blobs if secret in blob]
        assert not leaks, f"a secret reached the job events: {leaks[:2]}"


def test_site_rerun_at_vvv_changes_nothing_and_leaks_nothing(stack):
    result = stack.run("site", verbosity=3)
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed_tasks() == []
    assert_no_secret(result)


@pytest.mark.parametrize("check", ["daily_check", "weekly_check"])
def test_checks_mailing_at_vvv_leak_nothing(stack, smtp_sink, check):
    smtp_sink.clear()
    extravars = {
        "health_report_mail_to": ["ops@example.test"],
        "health_report_mail_host": smtp_sink.ip,
        "health_report_mail_port": smtp_sink.port,
        "health_report_mail_secure": "never",
        "health_report_mail_username": "bmops",
        "health_report_mail_password": SMTP_PASSWORD,
        # Force a breach so the mail (and its SMTP login) really happens.
        "bm_daily_thresholds": {"storage_used_max": 0},
        "bm_weekly_thresholds": {"xid_age_warn": 0, "xid_age_breach": 1},
    }
    result = stack.run(check, extravars=extravars, verbosity=3)
    assert result.rc != 0, "the forced breach did not fail the run"
    assert len(smtp_sink.wait_for(1)) == 1, "no mail reached the sink"
    assert_no_secret(result)
