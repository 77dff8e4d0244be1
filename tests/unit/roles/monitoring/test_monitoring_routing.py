# SPDX-License-Identifier: Apache-2.0
"""Role monitoring's Alertmanager configuration: amtool check-config and
amtool config routes test (P1 -> pager and mail, P2 -> mail, P3/P4 -> digest)."""

from __future__ import annotations

import pytest
import yaml
from monitoring_render import render, run, tool


def am(tmp_path, **overrides):
    path = tmp_path / "alertmanager.yml"
    path.write_text(render("alertmanager.yml.j2", **overrides), encoding="utf-8")
    proc = run(tool("amtool"), "check-config", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


def routes(path, *labels):
    proc = run(tool("amtool"), "config", "routes", "test", "--config.file", str(path), *labels)
    return proc.stdout.strip()


@pytest.mark.parametrize("labels, receivers", [
    (["severity=P1", "alertname=BmReadyNotOK"], "pager,mail-p1"),
    (["severity=P2", "alertname=BmBackupFailed"], "mail-p2"),
    (["severity=P3", "alertname=BmErrorLogLines"], "digest"),
    (["severity=P4", "alertname=SiteRule"], "digest"),
    (["severity=P4", "alertname=Watchdog"], "deadman"),
])
def test_routes_by_level(tmp_path, labels, receivers):
    assert routes(am(tmp_path), *labels) == receivers


def test_mail_only_site_routes_p1_to_mail(tmp_path):
    path = am(tmp_path, monitoring_pager_webhooks=[])
    assert routes(path, "severity=P1") == "mail-p1"


def test_pager_only_site_gets_p1_and_p2_on_the_pager(tmp_path):
    path = am(tmp_path, monitoring_mail_to=[])
    assert routes(path, "severity=P1") == "pager"
    assert routes(path, "severity=P2") == "pager"


def test_the_first_response_service_gets_p1_and_p2_with_its_token(tmp_path):
    path = am(tmp_path, monitoring_responder_url="http://eda.example:5000/endpoint",
              monitoring_responder_token="t" * 24)
    assert routes(path, "severity=P1") == "responder,pager,mail-p1"
    assert routes(path, "severity=P2") == "responder,mail-p2"
    assert routes(path, "severity=P3") == "digest"
    conf = yaml.safe_load(path.read_text())
    hook = next(r for r in conf["receivers"] if r["name"] == "responder")["webhook_configs"][0]
    assert hook["send_resolved"] is True
    assert hook["http_config"]["authorization"] == {"type": "Bearer", "credentials": "t" * 24}
    assert "responder" not in routes(am(tmp_path), "severity=P1")


def test_repeat_intervals_and_resolved_notifications(tmp_path):
    conf = yaml.safe_load(am(tmp_path).read_text())
    by_receiver = {r["receiver"]: r for r in conf["route"]["routes"]}
    assert by_receiver["pager"]["repeat_interval"] == "30m"
    assert by_receiver["mail-p1"]["repeat_interval"] == "30m"
    assert by_receiver["mail-p2"]["repeat_interval"] == "4h"
    assert by_receiver["digest"]["repeat_interval"] == "24h"
    assert by_receiver["digest"]["group_interval"] == "24h"
    for receiver in conf["receivers"]:
        for cfg in receiver.get("email_configs", []) + receiver.get("webhook_configs", []):
            if receiver["name"] != "deadman":
                assert cfg["send_resolved"] is True


def test_a_p1_outage_inhibits_the_p3s_it_causes(tmp_path):
    conf = yaml.safe_load(am(tmp_path).read_text())
    rule = next(r for r in conf["inhibit_rules"] if 'outage="true"' in r["source_matchers"])
    assert 'severity=~"P3|P4"' in rule["target_matchers"]
    assert rule["equal"] == ["bm_host"]


def test_smtp_login_only_when_a_username_is_set(tmp_path):
    assert "smtp_auth" not in am(tmp_path).read_text()
    login = {"monitoring_mail_username": "relay", "monitoring_mail_password": "not-a-secret"}
    text = am(tmp_path, **login).read_text()
    assert "smtp_auth_username" in text
