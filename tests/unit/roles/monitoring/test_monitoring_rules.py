# SPDX-License-Identifier: Apache-2.0
"""Role monitoring's alert rules: promtool check rules and promtool test rules,
firing and quiet at the manual's edges (issue 23)."""

from __future__ import annotations

import re

import pytest
import yaml
from monitoring_render import render, run, tool

H = 'bm_host="app1"'
# name -> (input series {series: values}, alertname, eval_time, firing label sets)
# Each alert is tested on both sides of its limit; times are after the `for`.
CASES = {
    "ready 502 for 1 min fires P1": (
        {f'probe_http_status_code{{job="bm_ready",instance="u",{H}}}': "200 502x5"},
        "BmReadyNotOK", "2m", [{"instance": "u", "job": "bm_ready", "severity": "P1"}]),
    "ready 502 for less than 1 min is quiet": (
        {f'probe_http_status_code{{job="bm_ready",instance="u",{H}}}': "200 200 502"},
        "BmReadyNotOK", "2m", []),
    "ready 200 is quiet": (
        {f'probe_http_status_code{{job="bm_ready",instance="u",{H}}}': "200x5"},
        "BmReadyNotOK", "4m", []),
    "host down fires P1": (
        {f'up{{job="node",instance="a",{H}}}': "1 0x5"}, "BmHostDown", "3m",
        [{"instance": "a", "job": "node", "severity": "P1"}]),
    "host up is quiet": ({f'up{{job="node",instance="a",{H}}}': "1x5"}, "BmHostDown", "3m", []),
    "backend container down fires P1": (
        {f'bmops_container_up{{service="backend",{H}}}': "1 0x5"}, "BmContainerDown", "3m",
        [{"service": "backend", "severity": "P1"}]),
    "containers up are quiet": (
        {f'bmops_container_up{{service="db",{H}}}': "1x5"}, "BmContainerDown", "3m", []),
    "restart loop fires P1": (
        {f'bmops_container_restart_count{{service="celery",{H}}}': "0 1 2 3 4"},
        "BmContainerRestartLoop", "4m", [{"service": "celery", "severity": "P1"}]),
    "one restart is quiet": (
        {f'bmops_container_restart_count{{service="celery",{H}}}': "0 1 1 1 1"},
        "BmContainerRestartLoop", "4m", []),
    "postgres down fires P1": ({f'pg_up{{{H}}}': "0x5"}, "BmPostgresDown", "2m",
                               [{"severity": "P1"}]),
    "postgres up is quiet": ({f'pg_up{{{H}}}': "1x5"}, "BmPostgresDown", "2m", []),
    "redis down fires P1": ({f'redis_up{{{H}}}': "0x5"}, "BmRedisDown", "2m",
                            [{"severity": "P1"}]),
    "redis up is quiet": ({f'redis_up{{{H}}}': "1x5"}, "BmRedisDown", "2m", []),
    "success rate 94.9 % fires P2": (
        {f'bmops_app_job_success_rate_percent{{window_hours="24",{H}}}': "94.9x10"},
        "BmJobSuccessRateLow", "6m", [{"window_hours": "24", "severity": "P2"}]),
    "success rate 95 % exactly is quiet": (
        {f'bmops_app_job_success_rate_percent{{window_hours="24",{H}}}': "95x10"},
        "BmJobSuccessRateLow", "6m", []),
    "storage 80 % fires P2": (
        {f'bmops_app_storage_used_percent{{kind="filesystem",name="/backup/db",{H}}}': "80x10"},
        "BmStorageHigh", "6m", [{"kind": "filesystem", "name": "/backup/db", "severity": "P2"}]),
    "storage 79.9 % is quiet": (
        {f'bmops_app_storage_used_percent{{kind="target",name="t1",{H}}}': "79.9x10"},
        "BmStorageHigh", "6m", []),
    "backup 27 h old fires P2": (
        {f'bmops_backup_last_success_timestamp_seconds{{{H}}}': "-97200x10"},
        "BmBackupTooOld", "6m", [{"severity": "P2"}]),
    "backup 25 h old is quiet": (
        {f'bmops_backup_last_success_timestamp_seconds{{{H}}}': "-90000x10"},
        "BmBackupTooOld", "6m", []),
    "failed backup run fires P2": (
        {f'bmops_backup_last_run_success{{{H}}}': "0x10"}, "BmBackupFailed", "6m",
        [{"severity": "P2"}]),
    "successful backup run is quiet": (
        {f'bmops_backup_last_run_success{{{H}}}': "1x10"}, "BmBackupFailed", "6m", []),
    "failed off-host copy fires P2": (
        {f'bmops_offsite_last_run_success{{{H}}}': "0x10"}, "BmOffsiteCopyFailed", "6m",
        [{"severity": "P2"}]),
    "successful off-host copy is quiet": (
        {f'bmops_offsite_last_run_success{{{H}}}': "1x10"}, "BmOffsiteCopyFailed", "6m", []),
    "newest backup 3 h ahead of its copy fires P2": (
        {f'bmops_backup_last_success_timestamp_seconds{{{H}}}': "10800x10",
         f'bmops_offsite_newest_backup_timestamp_seconds{{{H}}}': "0x10"},
        "BmOffsiteCopyBehind", "6m", [{"severity": "P2"}]),
    "newest backup copied is quiet": (
        {f'bmops_backup_last_success_timestamp_seconds{{{H}}}': "10800x10",
         f'bmops_offsite_newest_backup_timestamp_seconds{{{H}}}': "10800x10"},
        "BmOffsiteCopyBehind", "6m", []),
    "failed repository check fires P2": (
        {f'bmops_offsite_last_check_success{{{H}}}': "0x10"}, "BmOffsiteCheckFailed", "6m",
        [{"severity": "P2"}]),
    "passed repository check is quiet": (
        {f'bmops_offsite_last_check_success{{{H}}}': "1x10"}, "BmOffsiteCheckFailed", "6m", []),
    "WAL stream down 5 min fires P2": (
        {f'bmops_wal_slot_active{{slot="barman_app1",{H}}}': "1 0x10"}, "BmWalStreamDown",
        "7m", [{"slot": "barman_app1", "severity": "P2"}]),
    "WAL stream down 4 min is quiet": (
        {f'bmops_wal_slot_active{{slot="barman_app1",{H}}}': "1x3 0x4"}, "BmWalStreamDown",
        "7m", []),
    "WAL write lag 6 min fires P2": (
        {f'bmops_wal_write_lag_seconds{{slot="barman_app1",{H}}}': "360x10"},
        "BmWalShippingLag", "3m", [{"slot": "barman_app1", "severity": "P2"}]),
    "WAL write lag 5 min exactly is quiet": (
        {f'bmops_wal_write_lag_seconds{{slot="barman_app1",{H}}}': "300x10"},
        "BmWalShippingLag", "3m", []),
    "slot 0.9 GiB from its limit fires P2": (
        {f'bmops_wal_slot_safe_bytes{{slot="barman_app1",{H}}}': "966367641x10"},
        "BmWalSlotNearLimit", "6m", [{"slot": "barman_app1", "severity": "P2"}]),
    "slot 1 GiB from its limit is quiet": (
        {f'bmops_wal_slot_safe_bytes{{slot="barman_app1",{H}}}': "1073741824x10"},
        "BmWalSlotNearLimit", "6m", []),
    # promtool's clock starts at 0: a base backup that ended 8.5 days before it
    "base backup 8.5 days old fires P2": (
        {f'bmops_wal_base_backup_end_timestamp_seconds{{server="app1",{H}}}': "-734400x10"},
        "BmWalBaseBackupOld", "6m", [{"server": "app1", "severity": "P2"}]),
    "base backup 7 days old is quiet": (
        {f'bmops_wal_base_backup_end_timestamp_seconds{{server="app1",{H}}}': "-604800x10"},
        "BmWalBaseBackupOld", "6m", []),
    "slot holding 60 % of the free space fires P1": (
        {f'bmops_wal_slot_retained_bytes{{slot="barman_app1",{H}}}': "6000x5",
         f'bmops_wal_volume_free_bytes{{slot="barman_app1",{H}}}': "10000x5"},
        "BmWalFillingDisk", "3m", [{"slot": "barman_app1", "severity": "P1"}]),
    "slot holding half the free space is quiet": (
        {f'bmops_wal_slot_retained_bytes{{slot="barman_app1",{H}}}': "5000x5",
         f'bmops_wal_volume_free_bytes{{slot="barman_app1",{H}}}': "10000x5"},
        "BmWalFillingDisk", "3m", []),
    "one failed job fires P3": (
        {f'bmops_app_jobs_failed{{window_hours="24",{H}}}': "1x10"}, "BmFailedJobs", "6m",
        [{"window_hours": "24", "severity": "P3"}]),
    "no failed job is quiet": (
        {f'bmops_app_jobs_failed{{window_hours="24",{H}}}': "0x10"}, "BmFailedJobs", "6m", []),
    "an ERROR line fires P3": (
        {f'bmops_app_error_log_lines{{service="backend",window_hours="24",{H}}}': "1x10"},
        "BmErrorLogLines", "6m", [{"service": "backend", "window_hours": "24",
                                   "severity": "P3"}]),
    "no ERROR line is quiet": (
        {f'bmops_app_error_log_lines{{service="backend",window_hours="24",{H}}}': "0x10"},
        "BmErrorLogLines", "6m", []),
    "exporter down fires P2": (
        {f'up{{job="redis",instance="r",{H}}}': "0x10"}, "BmScrapeTargetDown", "6m",
        [{"job": "redis", "instance": "r", "severity": "P2"}]),
    "stale app metrics fire P2": (
        {f'bmops_app_metrics_timestamp_seconds{{{H}}}': "0x10"}, "BmTextfileStale", "6m",
        [{"severity": "P2"}]),
    "fresh app metrics are quiet": (
        {f'bmops_app_metrics_timestamp_seconds{{{H}}}': "0+60x10"}, "BmTextfileStale", "6m",
        []),
    "an unreadable section fires P3": (
        {f'bmops_app_metrics_error{{section="jobs",{H}}}': "1x10"}, "BmTextfileError", "6m",
        [{"section": "jobs", "severity": "P3"}]),
    "readable sections are quiet": (
        {f'bmops_app_metrics_error{{section="jobs",{H}}}': "0x10"}, "BmTextfileError", "6m",
        []),
    "watchdog always fires": ({}, "Watchdog", "1m", [{"severity": "P4"}]),
}
# The certificate at 31, 30.5, 30, 8, 7.5 and 7 days (manual 6.2: mail at 30, urgent
# at 7), compared exactly: 30.5 days is not yet at 30, 7.5 not yet at 7.
for days, soon, urgent in ((31, False, False), (30.5, False, False), (30, True, False),
                           (8, True, False), (7.5, True, False), (7, False, True)):
    series = {f'probe_ssl_earliest_cert_expiry{{job="bm_ready",instance="u",{H}}}':
              f"{int(days * 86400)}x2"}
    CASES[f"certificate {days} days: soon"] = (
        series, "BmCertificateExpiresSoon", "0m",
        [{"instance": "u", "job": "bm_ready", "severity": "P3"}] if soon else [])
    CASES[f"certificate {days} days: urgent"] = (
        series, "BmCertificateExpiresUrgent", "0m",
        [{"instance": "u", "job": "bm_ready", "severity": "P1"}] if urgent else [])


def labels_text(alertname: str, labels: dict) -> str:
    full = {"alertname": alertname, "alertstate": "firing", "bm_host": "app1", **labels}
    if alertname == "Watchdog":
        full.pop("bm_host")
    if alertname in ("BmHostDown", "BmReadyNotOK", "BmContainerDown", "BmContainerRestartLoop",
                     "BmPostgresDown", "BmRedisDown"):
        full["outage"] = "true"
    return "ALERTS{" + ",".join(f'{k}="{v}"' for k, v in sorted(full.items())) + "}"


RESPONSES = {"ja": {"P1": "30 分以内", "P2": "2 時間以内", "P3": "次営業日", "P4": "計画的対応"},
             "en": {"P1": "within 30 minutes", "P2": "within 2 hours",
                    "P3": "next business day", "P4": "planned"}}
READY_SUMMARY = {
    "en": "GET u answered 502 (limit: 200; 0 = no answer) for 1m",
    "ja": "システム稼働確認 GET u の応答が 502 です（正常基準: 200、0 = 応答なし）。1m 継続"}
LIMIT_WORD = {"en": "limit", "ja": "基準"}


@pytest.fixture(scope="module", params=["ja", "en"])
def rules_dir(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"rules-{request.param}")
    (d / "bmops.rules.yml").write_text(
        render("bmops.rules.yml.j2", monitoring_language=request.param), encoding="utf-8")
    return d


def lang_of(rules_dir) -> str:
    return rules_dir.name.split("-")[1][:2]


def test_promtool_check_rules(rules_dir):
    proc = run(tool("promtool"), "check", "rules", str(rules_dir / "bmops.rules.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_level_a_response_time_a_summary_and_a_runbook(rules_dir):
    doc = yaml.safe_load((rules_dir / "bmops.rules.yml").read_text())
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 18
    for rule in alerts:
        sev = rule["labels"]["severity"]
        ann = rule["annotations"]
        assert ann["response"] == RESPONSES[lang_of(rules_dir)][sev], rule["alert"]
        assert LIMIT_WORD[lang_of(rules_dir)] in ann["summary"], rule["alert"]
        assert "$value" in ann["summary"], rule["alert"]
        assert ann["runbook_url"].startswith("file:///usr/share/doc/bmops/alerts.md#")
        assert ann["awx_template"].startswith("bmops "), rule["alert"]
    tested = {case[1] for case in CASES.values()}
    assert tested == {r["alert"] for r in alerts}, "every alert has a promtool case"


def test_every_runbook_anchor_exists():
    from monitoring_render import ROLE
    doc = (ROLE / "files" / "doc" / "alerts.md").read_text()
    rules = yaml.safe_load(render("bmops.rules.yml.j2"))
    anchors = {r["annotations"]["runbook_url"].split("#")[1]
               for g in rules["groups"] for r in g["rules"]}
    for anchor in anchors:
        assert f"## {anchor}" in doc.lower().replace("`", ""), anchor


def test_promtool_test_rules_at_the_manuals_edges(rules_dir):
    tests = []
    for name, (series, alertname, at, firing) in CASES.items():
        tests.append({
            "name": name,
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "promql_expr_test": [{
                "expr": f'ALERTS{{alertname="{alertname}",alertstate="firing"}}',
                "eval_time": at,
                "exp_samples": [{"labels": labels_text(alertname, lab), "value": 1}
                                for lab in firing],
            }],
        })
    # and one alert in full: the summary names value and limit
    tests.append({
        "name": "the P1 summary names the status and the limit",
        "interval": "1m",
        "input_series": [{"series": f'probe_http_status_code{{job="bm_ready",instance="u",{H}}}',
                          "values": "502x5"}],
        "alert_rule_test": [{
            "eval_time": "2m", "alertname": "BmReadyNotOK",
            "exp_alerts": [{
                "exp_labels": {"severity": "P1", "outage": "true", "job": "bm_ready",
                               "instance": "u", "bm_host": "app1"},
                "exp_annotations": {
                    "summary": READY_SUMMARY[lang_of(rules_dir)],
                    "response": RESPONSES[lang_of(rules_dir)]["P1"],
                    "runbook_url": "file:///usr/share/doc/bmops/alerts.md#bmreadynotok",
                    "awx_template": "bmops incident triage"}}]}],
    })
    path = rules_dir / "bmops_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": ["bmops.rules.yml"],
                                    "evaluation_interval": "1m", "tests": tests},
                                   allow_unicode=True), encoding="utf-8")
    proc = run(tool("promtool"), "test", "rules", path.name, cwd=rules_dir)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def test_thresholds_come_from_bm_daily_thresholds():
    from bm_checks import daily_limits
    text = render("bmops.rules.yml.j2",
                  __monitoring_limits=daily_limits({"success_rate_min": 90,
                                                    "storage_used_max": 70}))
    assert "bmops_app_job_success_rate_percent < 90" in text
    assert "bmops_app_storage_used_percent >= 70" in text


def test_extra_rules_are_appended():
    extra = [{"alert": "SiteRule", "expr": "vector(1)", "labels": {"severity": "P4"}}]
    doc = yaml.safe_load(render("bmops.rules.yml.j2", monitoring_extra_rules=extra))
    assert doc["groups"][-1]["rules"] == extra


def test_every_awx_template_named_by_an_alert_exists():
    from monitoring_render import ROOT
    text = (ROOT / "roles" / "awx" / "defaults" / "main.yml").read_text()
    names = set(re.findall(r"^  - name: (bmops [^\n]+)$", text, re.M))
    rules = yaml.safe_load(render("bmops.rules.yml.j2"))
    named = {r["annotations"]["awx_template"] for g in rules["groups"] for r in g["rules"]}
    assert named <= names, named - names


def test_both_languages_name_the_same_prometheus_fields_in_every_summary():
    """Parity: a summary in Japanese shows the same labels and value as in English."""
    fields = {}
    for lang in ("ja", "en"):
        doc = yaml.safe_load(render("bmops.rules.yml.j2", monitoring_language=lang))
        fields[lang] = {r["alert"]: sorted(re.findall(r"{{ [^}]+ }}", r["annotations"]["summary"]))
                        for g in doc["groups"] for r in g["rules"]}
    assert fields["ja"] == fields["en"]


def test_a_site_response_time_overrides_the_catalogues():
    doc = yaml.safe_load(render("bmops.rules.yml.j2", monitoring_language="ja",
                                monitoring_response_times={"P3": "翌営業日 10 時まで"}))
    responses = {r["labels"]["severity"]: r["annotations"]["response"]
                 for g in doc["groups"] for r in g["rules"]}
    assert responses == {**RESPONSES["ja"], "P3": "翌営業日 10 時まで"}
