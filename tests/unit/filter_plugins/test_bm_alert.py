# SPDX-License-Identifier: Apache-2.0
"""filter_plugins/bm_alert.py: the lasting rules of the first response (issue 22)."""

from __future__ import annotations

# tests/conftest.py puts filter_plugins on sys.path.
import bm_alert
import pytest
from ansible.errors import AnsibleFilterError

CELERY = [{"alertname": "BmContainerDown", "service": "celery"}]


def ev(fp="fp1", host="app1", status="firing", starts="2026-12-02T01:00:00Z", **labels):
    return {"status": status, "fingerprint": fp, "startsAt": starts,
            "labels": {"alertname": "BmContainerDown", "severity": "P1", "bm_host": host,
                       **labels},
            "annotations": {"summary": "down"}}


def decide(state, event, action="firing", now=1000.0, **kw):
    return bm_alert.alert_response(state, event, action, now, **kw)


def test_a_new_alert_is_triaged_and_remembered():
    out = decide({}, ev())
    assert out["triage"] and not out["reply"] and out["remediate"] == ""
    assert out["thread"] == "<bmops-alert-fp1-20261202010000@bmops.invalid>"
    assert out["state"]["hosts"]["app1"]["at"] == 1000.0
    assert out["alert"]["starts_at"] == "2026-12-02T01:00:00Z"


def test_the_same_firing_is_not_triaged_twice_but_a_new_firing_is():
    state = decide({}, ev())["state"]
    again = decide(state, ev(), now=5000.0)
    assert not again["triage"] and "already answered" in again["reason"]
    refired = decide(state, ev(starts="2026-12-02T03:00:00Z"), now=5000.0)
    assert refired["triage"]


def test_one_triage_per_host_per_interval_other_alerts_join_its_thread():
    first = decide({}, ev("fp1"))
    other = decide(first["state"], ev("fp2"), now=1300.0)
    assert not other["triage"] and other["reply"] and other["thread"] == first["thread"]
    assert "one triage per host per 600 s" in other["reason"]
    later = decide(first["state"], ev("fp2"), now=1700.0)
    assert later["triage"]
    elsewhere = decide(first["state"], ev("fp3", host="app2"), now=1001.0)
    assert elsewhere["triage"]


def test_resolved_replies_in_the_thread_and_forgets_the_alert():
    first = decide({}, ev())
    done = decide(first["state"], ev(status="resolved"), "resolved", now=1200.0)
    assert done["reply"] and done["thread"] == first["thread"] and not done["triage"]
    assert "fp1" not in done["state"]["alerts"]
    unknown = decide({}, ev("fpX", status="resolved"), "resolved")
    assert not unknown["reply"] and "not triaged here" in unknown["reason"]


def test_remediation_only_where_enabled_and_once_per_interval():
    assert decide({}, ev(service="celery"))["remediate"] == ""
    first = decide({}, ev(service="celery"), remediations=CELERY)
    assert first["remediate"] == "celery"
    # the worker stops again: resolved, then a new firing 20 minutes later
    state = decide(first["state"], ev(service="celery", status="resolved"), "resolved",
                   now=1100.0)["state"]
    second = decide(state, ev(service="celery", starts="2026-12-02T01:20:00Z"),
                    now=2200.0, remediations=CELERY, host_interval=60)
    assert second["triage"] and second["remediate"] == ""
    assert "already started by bmops 1200 s ago" in second["remediation_refused"]
    third = decide(state, ev(service="celery", starts="2026-12-02T02:20:00Z"),
                   now=4700.0, remediations=CELERY, host_interval=60)
    assert third["remediate"] == "celery"


def test_a_rule_for_another_service_does_not_apply():
    out = decide({}, ev(service="backend"), remediations=CELERY)
    assert out["triage"] and out["remediate"] == "" and out["remediation_refused"] == ""


def test_the_state_passed_in_is_not_changed():
    state = {"alerts": {}, "hosts": {}, "remediations": {}}
    decide(state, ev(), remediations=CELERY)
    assert state == {"alerts": {}, "hosts": {}, "remediations": {}}


def test_old_alerts_are_forgotten():
    state = decide({}, ev())["state"]
    later = decide(state, ev("fp2", host="app2"), now=1000.0 + bm_alert.FORGET_SECONDS + 1)
    assert "fp1" not in later["state"]["alerts"]


@pytest.mark.parametrize("event, missing", [
    ({}, "status"),
    ({"status": "firing", "fingerprint": "x", "labels": {"alertname": "A", "severity": "P1"}},
     "labels.bm_host"),
    ("not a mapping", "not a mapping"),
])
def test_a_malformed_event_is_refused_with_what_is_missing(event, missing):
    with pytest.raises(AnsibleFilterError, match=missing):
        decide({}, event)


def test_an_unknown_action_is_refused():
    with pytest.raises(AnsibleFilterError, match="action must be one of"):
        decide({}, ev(), "acknowledged")
