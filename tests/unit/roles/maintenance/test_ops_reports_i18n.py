# SPDX-License-Identifier: Apache-2.0
"""The monthly maintenance, DR drill, incident triage and postmortem reports and the
first-response mail in both languages (bm_language):
the same lines in each, no English sentence left in the Japanese one, times in the
host's zone."""

from __future__ import annotations

import base64
import datetime
import json
import re

import bm_alert
import bm_i18n
import bm_triage
import jinja2
import pytest
from helpers import ROOT

DATA = ["app1.example.test", "app_audit_log", "public.backup_jobs", "json-file",
        "max-size=10m", "maintenance_patches_approved", "maintenance_allow_reboot",
        "VACUUM ANALYZE", "bmops-backup", "logrotate", "nginx", "Docker", "backend",
        "bmops/backend:ref", "pulled", "custom", "drill",
        # the triage's facts: log lines, queries, commands are data
        "ERROR worker lost connection to the broker", "SELECT pg_sleep(600)",
        "docker compose logs --tail=100", "playbooks/restart_services.yml",
        "docker compose up -d", "restart_confirm_full=true", "restart_service=celery",
        "backup-mgmt-celery-1", "pg_stat_activity", "pg_stat_statements",
        "pg_cancel_backend", "pg_terminate_backend", "REDISCLI_AUTH", "redis-cli ping",
        "docker compose exec -e", "playbooks/incident_triage.yml", "EXPLAIN",
        "sftp:repo:/srv/restic/app1", "backup-mgmt.example.test"]


def render(role: str, name: str, lang: str, **context) -> str:
    env = jinja2.Environment(  # noqa: S701 - as Ansible's template module
        loader=jinja2.FileSystemLoader(str(ROOT / "roles" / role / "templates")),
        undefined=jinja2.StrictUndefined, trim_blocks=True)
    env.filters.update(bm_i18n.FilterModule().filters())
    env.filters["to_json"] = json.dumps
    env.filters["regex_replace"] = lambda v, pattern, repl: re.sub(pattern, repl, v)
    env.filters["b64decode"] = lambda v: base64.b64decode(v).decode()
    env.globals["now"] = lambda utc=True: datetime.datetime(2026, 12, 1, 15, 40,
                                                            tzinfo=datetime.UTC)
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in (
        "1", "true", "yes", "on")
    return env.get_template(name).render(bm_language=lang, __bmops_common_timezone="Asia/Tokyo",
                                         inventory_hostname="app1.example.test", **context)


def maintenance(lang: str) -> str:
    report = {
        "vacuum": {"dead_tuples_before": 900, "dead_tuples_after": 0, "database": "backup_mgmt",
                   "database_bytes_before": 10485760, "database_bytes_after": 9437184,
                   "tables": [{"table": "public.backup_jobs", "dead_before": 900,
                               "dead_after": 0, "live_after": 100, "bytes_before": 8192,
                               "bytes_after": 8192}]},
        "retention": {"deleted": 12, "table": "app_audit_log", "keep_days": 365,
                      "batches": 1, "batch_size": 5000},
        "logrotate": {"logrotate_installed": True, "logrotate_config_valid": True,
                      "logrotate_errors": [], "nginx_present": True, "nginx_deleted": ["a"],
                      "docker_log_config": {"type": "json-file",
                                            "config": {"max-size": "10m"}},
                      "docker_log_issues": []},
        "patches": {"pending": [{"name": "libssl3", "current": "3.0.1", "candidate": "3.0.2"}],
                    "changed": False, "approved": False, "security": ["libssl3"],
                    "backup": "20261201_030000", "reboot_required": True, "rebooted": False},
        "images": {"services": [{"service": "backend", "image": "bmops/backend:ref",
                                 "result": "pulled", "from": "sha256:0123456789abcdef",
                                 "to": "sha256:fedcba9876543210"}]},
        "restore_test": {"failed": False, "id": "20261201_030000"},
    }
    return render("maintenance", "maintenance.md.j2", lang, __maintenance_report=report,
                  __maintenance_started="2026-12-01T15:30:00Z", maintenance_nginx_keep_days=14)


def dr_drill(lang: str) -> str:
    result = {"rto_seconds": 95, "rto_target_seconds": 3600, "rto_ok": True,
              "rpo_seconds": 7200, "rpo_target_seconds": 86400, "rpo_ok": True,
              "backup": {"id": "20261201_030000", "format": "custom", "size_bytes": 204800,
                         "created_utc": "2026-12-01T15:00:00Z"},
              "restore": {"ok": True}, "ready": {"status": "ok"}, "stack_kept": False}
    return render("dr_drill", "dr_drill.md.j2", lang, dr_drill_result=result,
                  dr_drill_project_name="bmops-drill", dr_drill_db_port=15432,
                  dr_drill_backend_port=18000)


def dr_standby(lang: str, promoted: bool = True, **extra) -> str:
    result = {"standby": "standby1", "primary": "app1", "promoted": promoted,
              "repository": "sftp:repo:/srv/restic/app1", "rto_seconds": 300,
              "rto_target_seconds": 3600, "rto_ok": True, "rpo_seconds": 7200,
              "rpo_target_seconds": 86400, "rpo_ok": True,
              "backup": {"id": "20261202_030000", "created_utc": "2026-12-01T18:00:00Z"},
              "restore": {"ok": True}, "configuration_fetched": "/var/lib/bmops/standby/app1",
              "first_backup": "20261202_090000", "source": "copies", **extra}
    return render("dr_standby", "dr_standby.md.j2", lang, dr_standby_result=result,
                  bm_project_name="backup-mgmt", bm_domain="backup-mgmt.example.test")


def triage_facts() -> dict:
    items = [{"service": s, "name": f"backup-mgmt-{s}-1", "state": "running", "running": True,
              "health": "healthy", "restart_count": 0, "exit_code": 0,
              "started_at": "2026-12-01T15:00:00Z"} for s in ("backend", "db", "redis")]
    items.append({"service": "celery", "name": "backup-mgmt-celery-1", "state": "restarting",
                  "running": False, "health": None, "restart_count": 7, "exit_code": 1,
                  "started_at": "2026-12-01T15:20:00Z"})
    return {
        "health": {"health": {"ready": {"status": 200, "latency_ms": 1800.0, "error": None,
                                        "body": "ok"},
                              "live": {"status": 200, "latency_ms": 3.0, "error": None,
                                       "body": "ok"}},
                   "redis": {"ok": True}, "containers": {"items": items, "error": None},
                   "storage": {"filesystems": [{"path": "/", "used_percent": 42.0}]}},
        "pg": {"server": {"started_at": "2026-12-01T14:00:00Z"},
               "connections": {"by_state": {"active": 2, "idle": 3}, "total": 5,
                               "max_connections": 100, "used_percent": 5.0},
               "long_running_queries": [{"pid": 7, "state": "active", "seconds": 95.0,
                                         "query": "SELECT pg_sleep(600)",
                                         "wait_event_type": None}],
               "pg_stat_statements": {"available": False, "reason": "extension missing"}},
        "logs": {"celery": [{"time": "2026-12-01T15:29:00Z",
                             "line": "ERROR worker lost connection to the broker"}]},
        "nginx": {"present": False, "access": {}, "error_tail": []},
        "memory": {"total_mb": 2000, "available_mb": 1200, "available_percent": 60.0},
    }


def triage_context(lang: str) -> dict:
    facts = triage_facts()
    now = "2026-12-01T15:30:00Z"
    result = bm_triage.triage(facts, None, ["backend", "celery", "celery-beat", "db", "redis"],
                              now)
    return dict(incident_triage_result=result, __incident_triage_facts=facts,
                __incident_triage_now=now, __incident_triage_stamp="20261201T153000Z",
                incident_triage_postmortem=bm_triage.postmortem(facts, result, now),
                incident_triage_alert={"alertname": "BmContainerRestartLoop", "severity": "P1",
                                       "starts_at": "2026-12-01T15:25:00Z", "summary": "s"},
                incident_triage_nginx_access_log="/var/log/nginx/access.log",
                incident_triage_report_dir="/var/lib/bmops/reports")


def triage(lang: str) -> str:
    return render("incident_triage", "triage.md.j2", lang, **triage_context(lang))


def postmortem(lang: str) -> str:
    return render("incident_triage", "postmortem.md.j2", lang, **triage_context(lang))


def first_response(lang: str, action: str = "firing") -> str:
    ctx = triage_context(lang)
    event = {"status": action, "fingerprint": "f00d", "startsAt": "2026-12-01T15:25:00Z",
             "labels": {"alertname": "BmContainerRestartLoop", "bm_host": "app1.example.test",
                        "severity": "P1"},
             "annotations": {"summary": "s"}}
    state = {} if action == "firing" else bm_alert.alert_response(
        {}, {**event, "status": "firing"}, "firing", 1_000_000)["state"]
    decision = bm_alert.alert_response(state, event, action, 1_000_100,
                                       remediations=[{"alertname": "BmContainerRestartLoop",
                                                      "service": ""}])
    result = ctx["incident_triage_result"]
    return render("alert_response", "mail.txt.j2", lang, alert_response_action=action,
                  __alert_response=decision,
                  __alert_response_before={"result": result, "report": "/r/triage.md",
                                           "postmortem": "/r/postmortem.md"},
                  __alert_response_after={},
                  __alert_response_remediation_msg={
                      "id": "ar.rem.refused",
                      "fields": {"reason": decision["msg"]["remediation_refused"]}},
                  __alert_response_files={"results": [
                      {"content": base64.b64encode(b"(report)").decode()}]})


def first_response_resolved(lang: str) -> str:
    return first_response(lang, "resolved")


def english_sentences(text: str) -> list[str]:
    for d in DATA:
        text = text.replace(d, " ")
    text = re.sub(r"`[^`]*`|\{[^}]*\}", " ", text)
    return re.findall(r"\b[A-Za-z]{2,}(?:[ ,]+[A-Za-z]{2,}){2,}\b", text)


def shape(line: str) -> str:
    """What a Markdown line is: a heading of its level, a table row, a list item, text."""
    marker = re.match(r"#+ |\||- |$", line)
    return marker.group(0) if marker else "text"


@pytest.mark.parametrize("report", [maintenance, dr_drill, dr_standby, triage, postmortem,
                                    first_response, first_response_resolved])
def test_both_languages_have_the_same_lines_and_japanese_no_english_sentence(report):
    ja, en = report("ja"), report("en")
    assert ja.count("\n") == en.count("\n")
    assert [shape(line) for line in ja.splitlines()] == [shape(line) for line in en.splitlines()]
    assert not english_sentences(ja), english_sentences(ja)
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", ja)


def test_maintenance_report_reads_in_japanese_with_local_time():
    ja = maintenance("ja")
    assert ja.startswith("# 月次メンテナンス — app1.example.test")
    assert ("開始 2026-12-02 00:30 JST (+09:00) · 実施した作業: "
            "DB バキューム / 統計更新（VACUUM ANALYZE）, 監査ログの保存期間, ") in ja
    assert "セキュリティ更新: libssl3。\n適用前の検証済みバックアップ: 20261201_030000。\n" in ja
    assert "## DB バキューム / 統計更新（VACUUM ANALYZE）" in ja
    assert "1 件のパッケージが未適用: 適用は承認されていません" in ja
    en = maintenance("en")
    assert "## VACUUM ANALYZE" in en and "Started 2026-12-02 00:30 JST (+09:00)" in en
    assert "1 package(s) pending: NOT applied" in en
    assert "steps run: VACUUM ANALYZE, Audit log retention, Log rotation, OS updates" in en
    assert ", security: libssl3.\nVerified backup before patching: 20261201_030000.\n" in en


def test_dr_drill_report_reads_in_japanese_with_local_time():
    ja = dr_drill("ja")
    assert "| RTO（訓練開始 → 復元したスタックの稼働） | 95 秒 | 3600 秒 | 達成 |" in ja
    assert "7200 秒（2026-12-02 00:00 JST (+09:00)）" in ja
    en = dr_drill("en")
    assert "| RTO (drill start → restored stack ready) | 95 s | 3600 s | ok |" in en


def test_triage_report_and_postmortem_read_in_japanese_with_local_time():
    ja = triage("ja")
    assert ja.startswith("# 障害の切り分け — app1.example.test\n\n作成 2026-12-02 00:30:00 JST")
    assert "| コンテナが起動しない | **検知** | コンテナがクラッシュしているか" in ja
    assert "- /health/ready の応答に 1800 ms かかりました（基準 1000 ms）" in ja
    assert ("| celery | backup-mgmt-celery-1 | restarting | — | 7 | 1 | "
            "2026-12-02 00:20:00 JST") in ja
    en = triage("en")
    assert "| Container not starting | **detected** | a container crashes" in en
    pm = postmortem("ja")
    assert pm.startswith("# ポストモーテム（下書き） — app1.example.test")
    assert "## タイムライン（Asia/Tokyo）" in pm
    assert ("| 2026-12-02 00:25:00 JST (+09:00) | "
            "アラート BmContainerRestartLoop（P1）発報: s |") in pm
    assert "障害の切り分けを実行: API 応答遅延、コンテナが起動しない を検知" in pm
    assert "検知: API 応答遅延、コンテナが起動しない" in pm


def test_first_response_mail_reads_in_japanese_with_local_time():
    ja = first_response("ja")
    assert ja.startswith("app1.example.test で P1 BmContainerRestartLoop が発生"
                         "（2026-12-02 00:25:00 JST (+09:00) から）\ns\n")
    assert "切り分け（読み取りのみ、playbooks/incident_triage.yml）: 障害" in ja
    assert "検知: API 応答遅延、コンテナが起動しない" in ja
    assert ("自動復旧: 見送り: BmContainerRestartLoop の自動復旧ルールにサービスの指定がなく、"
            "アラートにも service ラベルがありません") in ja
    en = first_response("en")
    assert "Remediation: refused: the remediation rule for BmContainerRestartLoop names no " in en
    assert "Detected: API slow, Container not starting" in en
    resolved = first_response_resolved("ja")
    assert resolved.startswith("解消: app1.example.test の P1 BmContainerRestartLoop\n"
                               "発生 2026-12-02 00:25:00 JST (+09:00)、"
                               "解消 2026-12-02 00:40:00 JST")
    assert "解消: 切り分けのスレッドに記録しました" in resolved


def test_standby_report_reads_in_japanese_with_local_time():
    ja = dr_standby("ja")
    assert ja.startswith("# フェイルオーバー — app1 から standby1 へ")
    assert "| 7200 秒（2026-12-02 03:00 JST (+09:00)） | 86400 秒 | 達成 |" in ja
    assert "担当者の作業: backup-mgmt.example.test の DNS/IP" in ja
    assert dr_standby("en", promoted=False).startswith("# DR drill on the standby — standby1")


def test_standby_report_from_the_wal_names_barman_and_the_last_transaction():
    wal = dict(source="wal", repository="barman:repo/app1", configuration_fetched="",
               rpo_seconds=4, last_commit_utc="2026-12-02T01:41:07Z")
    ja = dr_standby("ja", promoted=False, **wal)
    assert ("| RPO（復旧した最新のトランザクションからの経過時間） | "
            "4 秒（2026-12-02 10:41 JST (+09:00)） |") in ja
    assert "barman:repo/app1（Barman）にある app1 の最新の WAL" in ja
    assert "restic" not in ja and "プライマリの設定" not in ja
    en = dr_standby("en", promoted=False, **wal)
    assert "The newest WAL of app1 on barman:repo/app1 (Barman)" in en
    # Nothing committed since the base backup: the RPO row says it counts from its start.
    idle = dict(wal, last_commit_from="base_backup", rpo_seconds=3600)
    ja = dr_standby("ja", promoted=False, **idle)
    assert ("| RPO（ベースバックアップ後のトランザクションなし：その開始からの経過時間） | "
            "3600 秒（2026-12-02 10:41 JST (+09:00)） |") in ja
    assert "RPO (no transaction after the base backup: since it started)" in dr_standby(
        "en", promoted=False, **idle)
