# SPDX-License-Identifier: Apache-2.0
"""bm_pg_stats_info and the jobs / storage SQL of bm_health_info against a real
PostgreSQL 15 (image bmops/postgres:15 from `make images`), and both modules run
through Ansible itself (ad-hoc, as AWX would load them from the project).

The containers carry Compose project labels, so the Docker sections of bm_health_info
(containers, logs, Redis PING with REDISCLI_AUTH) run against them too: db, redis
(bmops/redis:7 with a password) and log emitters standing in for backend and celery."""

from __future__ import annotations

import http.server
import json
import os
import secrets
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import psycopg
import pytest

# tests/conftest.py makes plugins/module_utils importable as ansible.module_utils.bm_*.
from ansible.module_utils import bm_health
from ansible.module_utils.bm_common import pg_connect
from ansible.module_utils.bm_pg_stats import PgStats

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "bmops/postgres:15"
REDIS_IMAGE = "bmops/redis:7"
PREFIX = "bmops-checks-"
PROJECT = f"{PREFIX}{os.getpid()}"


def labels(service):
    return {"com.docker.compose.project": PROJECT, "com.docker.compose.service": service}


@pytest.fixture(scope="module")
def pg():
    client = docker.from_env()
    for image in (IMAGE, REDIS_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {image} is missing: run `make images` first")
    password = secrets.token_urlsafe(12)
    container = client.containers.run(
        IMAGE, ["postgres", "-c", "shared_preload_libraries=pg_stat_statements"],
        name=f"{PROJECT}-db-1", detach=True, labels=labels("db"),
        environment={"POSTGRES_PASSWORD": password, "POSTGRES_DB": "backup_mgmt"},
        ports={"5432/tcp": ("127.0.0.1", None)},
    )
    try:
        container.reload()
        port = int(container.ports["5432/tcp"][0]["HostPort"])
        params = dict(db_host="127.0.0.1", db_port=port, db_name="backup_mgmt",
                      db_user="postgres", db_password=password, connect_timeout=3)
        deadline = time.monotonic() + 90
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=port, dbname="backup_mgmt",
                                     user="postgres", password=password, connect_timeout=2):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    pytest.fail("PostgreSQL did not accept connections within 90 s:\n"
                                + container.logs(tail=30).decode())
                time.sleep(1)
        yield params
    finally:
        container.remove(force=True, v=True)


def admin(params):
    return psycopg.connect(host=params["db_host"], port=params["db_port"],
                           dbname=params["db_name"], user=params["db_user"],
                           password=params["db_password"], autocommit=True)


def gather(params, **kwargs):
    conn = pg_connect(params)
    try:
        return PgStats(conn, **kwargs).gather()
    finally:
        conn.close()


def test_01_without_the_extension_reports_why(pg):
    stats = gather(pg)
    assert stats["errors"] == []
    assert stats["pg_stat_statements"]["available"] is False
    assert "not installed" in stats["pg_stat_statements"]["reason"]
    assert stats["server"]["version_num"] >= 150000
    assert {d["name"] for d in stats["databases"]} >= {"backup_mgmt", "postgres"}
    assert stats["connections"]["max_connections"] > 0
    json.dumps(stats)  # JSON-serialisable as the RETURN block promises


def test_02_tables_indexes_and_statements(pg):
    with admin(pg) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, k int, pad text)")
        conn.execute("CREATE INDEX big_pad_idx ON big (pad)")
        conn.execute("INSERT INTO big SELECT g, g % 100, repeat('x', 50) "
                     "FROM generate_series(1, 20000) g")
        conn.execute("UPDATE big SET k = k + 1 WHERE id <= 5000")
        for _ in range(6):
            conn.execute("SELECT count(*) FROM big WHERE k = 7").fetchone()
        conn.execute("SELECT pg_stat_force_next_flush()")
    # a new session so the flushed statistics are visible
    stats = gather(pg, min_seq_scan=5, min_table_bytes=0)
    assert stats["errors"] == []
    table = next(t for t in stats["tables"] if t["table"] == "big")
    assert table["live_tuples"] == 20000
    assert table["dead_tuples"] == 5000 and table["dead_percent"] == 20.0
    assert table["seq_scan"] >= 6 and table["total_bytes"] > table["table_bytes"] > 0
    unused = [i["index"] for i in stats["unused_indexes"]]
    assert "big_pad_idx" in unused and "big_pkey" not in unused
    assert "big" in [m["table"] for m in stats["missing_index_candidates"]]
    pgss = stats["pg_stat_statements"]
    assert pgss["available"] is True and pgss["statements"]
    assert any("FROM big" in s["query"] for s in pgss["statements"])
    assert stats["cache_hit"]["ratio_percent"] is not None


def test_03_the_session_is_read_only(pg):
    conn = pg_connect(pg)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE nope (i int)")
    finally:
        conn.close()


def test_03b_the_session_never_waits_long_on_a_lock(pg):
    conn = pg_connect(pg)
    try:
        limits = conn.execute("SELECT current_setting('lock_timeout') AS lock, "
                              "current_setting('statement_timeout') AS stmt").fetchone()
        assert limits == {"lock": "2s", "stmt": "30s"}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def app_schema(pg):
    """The reference app's tables: 3 jobs finished in the last 24 h, one of them failed."""
    with admin(pg) as conn:
        conn.execute("""
            CREATE TABLE backup_jobs (id serial PRIMARY KEY, name text, status text,
                started_at timestamptz, finished_at timestamptz, bytes bigint, error text);
            CREATE TABLE storage_targets (name text, path text, capacity_bytes bigint,
                used_bytes bigint);
            INSERT INTO backup_jobs (name, status, finished_at, error) VALUES
              ('a', 'success', now() - interval '1 hour', NULL),
              ('b', 'success', now() - interval '2 hours', NULL),
              ('c', 'failed', now() - interval '3 hours', 'disk full'),
              ('d', 'failed', now() - interval '30 hours', 'old failure'),
              ('e', 'running', NULL, NULL);
            INSERT INTO storage_targets VALUES ('nas1', '/mnt/nas1', 1000, 850),
                                               ('nas2', '/mnt/nas2', 0, 0);
        """)
    return pg


def test_04_jobs_and_storage_sql_of_the_reference_schema(pg, app_schema):
    conn = pg_connect(pg)
    try:
        jobs = bm_health.gather_jobs(conn, 24, 10)
        targets = bm_health.gather_storage_targets(conn)
    finally:
        conn.close()
    assert (jobs["total"], jobs["succeeded"], jobs["failed"]) == (3, 2, 1)
    assert jobs["success_rate"] == pytest.approx(200 / 3)
    assert [(j["name"], j["error"]) for j in jobs["failed_jobs"]] == [("c", "disk full")]
    assert jobs["failed_jobs"][0]["finished_at"].endswith("+00:00")
    assert [(t["name"], t["used_percent"]) for t in targets] == [("nas1", 85.0), ("nas2", None)]


def ansible_adhoc(module, args):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json")
    venv_bin = Path(sys.executable).parent
    proc = subprocess.run(
        [str(venv_bin / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", "-m", module,
         "-a", json.dumps(args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    out = json.loads(proc.stdout)
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"], proc.stdout + proc.stderr


def test_05_modules_through_ansible(pg, app_schema, tmp_path):
    result, output = ansible_adhoc("bm_pg_stats_info", {**pg, "limit": 5})
    assert result.get("failed") is not True, output
    assert result["changed"] is False and result["pg_stat_statements"]["available"] is True
    assert pg["db_password"] not in output

    health, output = ansible_adhoc("bm_health_info", {
        **pg, "sections": ["health", "jobs", "storage"], "paths": [str(tmp_path)],
        "health_url": "http://127.0.0.1:9"})
    assert health["changed"] is False, output
    assert health["jobs"]["failed"] == 1 and health["storage"]["targets"][0]["name"] == "nas1"
    assert health["health"]["ready"]["status"] is None  # nothing listens: reported, no crash
    assert health["errors"] == [health["errors"][0]] and health["errors"][0].startswith("health")
    assert pg["db_password"] not in output


def test_06_wrong_password_is_one_sentence(pg):
    result, output = ansible_adhoc("bm_pg_stats_info", {**pg, "db_password": "wrong-pw"})
    assert result["failed"] is True
    assert result["msg"].startswith(
        f"Cannot connect to PostgreSQL at 127.0.0.1:{pg['db_port']} as postgres: ")
    assert "password authentication failed" in result["msg"]
    assert "Check bm_db_password" in result["msg"] and "Traceback" not in output


@pytest.fixture(scope="module")
def stack(pg):
    """redis with a password, and log emitters labelled backend / celery."""
    client = docker.from_env()
    redis_password = secrets.token_urlsafe(12)
    emit = ("echo 'INFO started'; echo 'ERROR job 7 failed: disk full'; "
            "echo '{\"level\": \"warning\", \"msg\": \"slow\"}' >&2; "
            "echo 'INFO no error here'; exec sleep 600")
    containers = [
        client.containers.run(REDIS_IMAGE, ["redis-server", "--requirepass", redis_password],
                              name=f"{PROJECT}-redis-1", labels=labels("redis"), detach=True),
        client.containers.run(REDIS_IMAGE, ["sh", "-c", emit], entrypoint=[],
                              name=f"{PROJECT}-backend-1", labels=labels("backend"),
                              detach=True),
        client.containers.run(REDIS_IMAGE, ["sh", "-c", "echo 'celery ready'; exec sleep 600"],
                              entrypoint=[], name=f"{PROJECT}-celery-1",
                              labels=labels("celery"), detach=True),
    ]
    try:
        deadline = time.monotonic() + 30
        while True:
            _rc, out = containers[0].exec_run(["redis-cli", "ping"],
                                               environment={"REDISCLI_AUTH": redis_password})
            if out.strip() == b"PONG":
                break
            if time.monotonic() > deadline:
                pytest.fail(f"redis did not answer: {out!r}")
            time.sleep(0.5)
        yield {"redis_password": redis_password}
    finally:
        for container in containers:
            container.remove(force=True)


@pytest.mark.parametrize("method", ["sdk", "cli"])
def test_07_docker_sections(pg, stack, method):
    args = {**pg, "sections": ["logs", "redis", "containers"], "project_name": PROJECT,
            "docker_method": method, "redis_password": stack["redis_password"]}
    result, output = ansible_adhoc("bm_health_info", args)
    assert result.get("failed") is not True, output
    assert result["errors"] == [], output
    items = {c["service"]: c for c in result["containers"]["items"]}
    assert set(items) == {"db", "redis", "backend", "celery"}
    assert result["containers"]["method"] == method
    assert items["db"]["running"] and items["db"]["health"] in ("starting", "healthy")
    assert items["db"]["image"] == IMAGE
    backend = result["logs"]["services"]["backend"]
    assert (backend["error"], backend["warning"]) == (1, 1), backend
    assert backend["samples"]["error"] == ["ERROR job 7 failed: disk full"]
    assert result["logs"]["services"]["celery"]["error"] == 0
    assert result["redis"] == {"method": "docker-exec", "ok": True, "response": "PONG",
                               "error": None}
    assert stack["redis_password"] not in output and pg["db_password"] not in output


def test_08_redis_wrong_password_is_reported(pg, stack):
    result, output = ansible_adhoc("bm_health_info", {
        **pg, "sections": ["redis"], "project_name": PROJECT, "redis_password": "wrong"})
    assert result["redis"]["ok"] is False, output
    assert "WRONGPASS" in result["redis"]["error"] or "NOAUTH" in result["redis"]["error"]
    assert result["errors"][0].startswith("redis: ")


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        body = json.dumps({"status": "ok" if self.status == 200 else "fail"}).encode()
        self.send_response(self.status if self.path == "/health/ready" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def smtp_sink(stack):
    client = docker.from_env()
    try:
        client.images.get("bmops/smtp-sink:latest")
    except docker.errors.ImageNotFound:
        pytest.fail("image bmops/smtp-sink:latest is missing: run `make images` first")
    sink = client.containers.run("bmops/smtp-sink:latest", name=f"{PROJECT}-smtp",
                                 ports={"1025/tcp": ("127.0.0.1", None)}, detach=True)
    try:
        sink.reload()
        port = int(sink.ports["1025/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 30
        while True:
            try:
                smtplib.SMTP("127.0.0.1", port, timeout=2).quit()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("SMTP sink did not answer")
                time.sleep(0.5)
        yield sink, port
    finally:
        sink.remove(force=True)


def test_09_daily_playbook_end_to_end(pg, app_schema, stack, smtp_sink, tmp_path):
    """daily_check.yml on localhost: report files, textfile, one mail, set_stats, rc."""
    sink, smtp_port = smtp_sink
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with admin(pg) as conn:  # storage breaches; the failed job and the ERROR line warn
        conn.execute("UPDATE storage_targets SET used_bytes = capacity_bytes")
    inventory = {"all": {"children": {"bm_app": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
        "bm_project_name": PROJECT, "bm_db_port": pg["db_port"],
        "bm_db_password": pg["db_password"], "bm_redis_password": stack["redis_password"],
        "bm_health_url": f"http://127.0.0.1:{server.server_address[1]}",
        "bm_report_dir": str(tmp_path / "reports"), "bm_textfile_dir": str(tmp_path / "prom"),
        "bm_check_storage_paths": [str(tmp_path)],
        "health_report_owner": None, "health_report_group": None,
        "health_report_mail_to": ["ops@example.org"], "health_report_mail_host": "127.0.0.1",
        "health_report_mail_port": smtp_port, "health_report_mail_secure": "never",
        "health_report_mail_username": "bmops", "health_report_mail_password": "smtp-pw",
    }}}}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_SHOW_CUSTOM_STATS="1",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json")
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i",
             str(tmp_path / "inventory.json"), "-vvv", "playbooks/daily_check.yml"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    finally:
        server.shutdown()
        server.server_close()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output  # a breach fails the play
    for secret in (pg["db_password"], stack["redis_password"], "smtp-pw"):
        assert secret not in output
    # -vvv writes lines before the JSON document of the callback
    document = proc.stdout[proc.stdout.rindex("\n{\n") + 1:]
    stats = json.loads(document)["global_custom_stats"]["bmops_daily"]
    assert stats["status"] == "breach"
    assert any("storage nas1 100.0 % is at or above the limit 80 %" in b
               for b in stats["breaches"]), stats
    # the manual's "0 件が理想": warnings, not breaches
    assert not any("failed jobs" in b or "ERROR log lines" in b for b in stats["breaches"])
    assert any("failed jobs 1 is above the limit 0 (c)" in w for w in stats["warnings"])
    assert any("ERROR log lines (24 h) of backend 1 is above the limit 0" in w
               for w in stats["warnings"])
    assert stats["report"] == str(tmp_path / "reports" / "daily-latest.json")
    report = json.loads((tmp_path / "reports" / "daily-latest.json").read_text())
    checks = {(c["metric"], c["item"]): c["status"] for c in report["checks"]}
    assert checks[("health_ready_status", None)] == "ok"
    assert checks[("redis_ping", None)] == "ok"
    assert checks[("storage_used_percent", "nas1")] == "breach"
    assert checks[("container_up", "db")] == "ok"
    names = sorted(p.name for p in (tmp_path / "reports").iterdir())
    # 3 forms x (stamped + latest), the certificate alerts mailed (none here), the
    # history of the figures (this one run)
    assert len(names) == 8 and "daily-latest.md" in names and "daily-latest.html" in names
    history = json.loads((tmp_path / "reports" / "daily-history.json").read_text())
    assert [h["figures"]["storage:nas1"] for h in history] == [
        next(c["value"] for c in report["checks"] if c["item"] == "nas1")]
    assert json.loads((tmp_path / "reports" / ".notified-daily.json").read_text()) == []
    prom = tmp_path / "prom" / "bmops_daily.prom"
    assert 'bmops_run_status{check="daily"} 2' in prom.read_text()
    assert oct(prom.stat().st_mode & 0o777) == "0o644"
    _rc, out = sink.exec_run(["sh", "-c", "cat /srv/mail/*.eml"])
    mail = out.decode()
    assert mail.count("X-Bmops-Rcpt-To") == 1, mail[:2000]  # once per run
    assert "ops@example.org" in mail and "BREACH" in mail
    assert 'filename="daily-latest.json"' in mail or "daily-latest.json" in mail


def test_10_weekly_playbook_end_to_end(pg, app_schema, tmp_path):
    """weekly_check.yml on localhost: database statistics, apt simulation, certificates."""
    with admin(pg) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    cert = tmp_path / "soon.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "5",
         "-subj", "/CN=soon.example.org", "-keyout", str(tmp_path / "soon.key"),
         "-out", str(cert)], check=True, capture_output=True, timeout=60)
    inventory = {"all": {"children": {"bm_app": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
        "bm_db_port": pg["db_port"], "bm_db_password": pg["db_password"],
        "bm_redis_password": "unused", "bm_certificates": [str(cert)],
        "bm_report_dir": str(tmp_path / "reports"), "bm_textfile_dir": str(tmp_path / "prom"),
        "health_report_owner": None, "health_report_group": None,
    }}}}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i",
         str(tmp_path / "inventory.json"), "playbooks/weekly_check.yml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output  # the certificate expires in < 7 days
    assert "URGENT: certificate" in output and pg["db_password"] not in output
    report = json.loads((tmp_path / "reports" / "weekly-latest.json").read_text())
    metrics = {c["metric"] for c in report["checks"]}
    assert {"xid_age", "longest_query_seconds", "pg_stat_statements_available",
            "security_updates", "certificate_days_left"} <= metrics
    assert report["facts"]["pg_stats"]["pg_stat_statements"]["available"] is True
    assert report["facts"]["certificates"][0]["days_left"] in (4, 5)
    assert report["summary"]["breaches"] == [
        c["message"] for c in report["checks"] if c["status"] == "breach"]
    assert "weekly-latest.md" in {p.name for p in (tmp_path / "reports").iterdir()}
