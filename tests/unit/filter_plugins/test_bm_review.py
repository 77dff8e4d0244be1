# SPDX-License-Identifier: Apache-2.0
"""Tables for filter_plugins/bm_review.py (quarterly review: parsers, findings, EOL, benchmark)."""

from __future__ import annotations

import datetime
from pathlib import Path

# tests/conftest.py puts filter_plugins on sys.path.
import bm_review
import pytest
import yaml

TABLE = yaml.safe_load((Path(__file__).resolve().parents[3]
                        / "roles/quarterly_review/files/eol.yml").read_text())
TODAY = datetime.date(2026, 12, 3)


def titles(findings, priority=None):
    return [f["title"] for f in findings if priority is None or f["priority"] == priority]


def test_rank_orders_by_level_and_counts():
    found = [bm_review.finding("P4", "a", "low"), bm_review.finding("P1", "a", "urgent"),
             bm_review.finding("P3", "a", "mid")]
    ranked = bm_review.rank(found)
    assert titles(ranked["findings"]) == ["urgent", "mid", "low"]
    assert ranked["counts"] == {"P1": 1, "P2": 0, "P3": 1, "P4": 1}
    assert ranked["worst"] == "P1"
    assert bm_review.rank([])["worst"] is None
    assert titles(bm_review.at_or_above(found, "P3")) == ["urgent", "mid"]
    with pytest.raises(ValueError):
        bm_review.finding("P5", "a", "b")


LYNIS = """\
lynis_version=3.1.4
warning[]=PKGS-7388|Can't find any security repository|-|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|AllowTcpForwarding (set YES to NO)|-|
suggestion[]=BANN-7126|Add a legal banner to /etc/issue|-|-|
lynis_tests_done=262
hardening_index=55
"""


def test_lynis_report_and_findings():
    report = bm_review.lynis_report(LYNIS)
    assert report["hardening_index"] == 55 and report["tests_performed"] == 262
    assert report["warnings"][0] == {"id": "PKGS-7388", "details": "", "solution": "",
                                     "text": "Can't find any security repository"}
    assert report["suggestions"][0]["details"] == "AllowTcpForwarding (set YES to NO)"
    found = bm_review.lynis_findings(report, index_min=60)
    assert titles(found, "P3") == ["Lynis warning PKGS-7388: Can't find any security repository",
                                   "Lynis hardening index 55 < 60"]
    assert titles(found, "P4") == ["Lynis: 2 suggestion(s)"]
    assert not titles(bm_review.lynis_findings(report, index_min=50), "P3")[1:]


def item(ident, finding, severity="INFO"):
    return {"id": ident, "ip": "backup.example/127.0.0.1", "port": "443",
            "severity": severity, "finding": finding}


def test_testssl_protocols_and_severities():
    good = bm_review.testssl_results([
        item("SSLv3", "not offered", "OK"), item("TLS1", "not offered", "OK"),
        item("TLS1_1", "not offered", "OK"), item("TLS1_2", "offered", "OK"),
        item("TLS1_3", "offered with final", "OK"), item("HSTS_time", "730 days", "OK"),
        item("engine_problem", "No engine or GOST support", "WARN"),
        item("cert_chain_of_trust", "passed.", "OK")])
    assert good["findings"] == []
    assert good["protocols"]["TLS1"] == "not offered"
    assert good["hsts"] == "730 days" and good["chain"] == "passed."

    bad = bm_review.testssl_results([
        item("SSLv3", "offered", "HIGH"), item("TLS1", "offered (deprecated)", "LOW"),
        item("HSTS", "not offered", "LOW"),
        item("cert_chain_of_trust", "failed (self signed).", "CRITICAL"),
        item("BREACH", "potentially VULNERABLE", "MEDIUM"),
        item("scanProblem", "timeout", "FATAL")])
    assert titles(bad["findings"], "P1") == ["TLS: SSLv3 is offered",
                                             "TLS: cert_chain_of_trust (CRITICAL)"]
    assert titles(bad["findings"], "P2") == ["TLS: TLS1 is offered"]
    assert sorted(titles(bad["findings"], "P3")) == ["TLS: BREACH (MEDIUM)", "TLS: no HSTS header",
                                                     "testssl.sh could not finish: scanProblem"]


SS = """\
udp UNCONN 0 0 127.0.0.11:51312 0.0.0.0:*
tcp LISTEN 0 4096 127.0.0.1:5432 0.0.0.0:* users:(("docker-proxy",pid=3111,fd=4))
tcp LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=4633,fd=13),("nginx",pid=4067,fd=13))
tcp LISTEN 0 511 [::]:80 [::]:* users:(("nginx",pid=4633,fd=5))
tcp LISTEN 0 4096 0.0.0.0:6379 0.0.0.0:* users:(("docker-proxy",pid=1,fd=4))
tcp LISTEN 0 5 10.0.0.5:9100 0.0.0.0:* users:(("prometheus-node",pid=2,fd=3))
tcp LISTEN 0 5 *:8765 *:* users:(("python3",pid=3,fd=3))
tcp LISTEN 0 5 [::1]:9090 [::]:* users:(("prometheus",pid=4,fd=3))
"""


def test_listeners_and_findings():
    sockets = bm_review.listeners(SS)
    by_port = {s["port"]: s for s in sockets}
    assert by_port[443]["process"] == "nginx" and by_port[443]["exposure"] == "all"
    assert by_port[80]["address"] == "::" and by_port[80]["exposure"] == "all"
    assert by_port[5432]["exposure"] == "loopback" and by_port[9090]["exposure"] == "loopback"
    assert by_port[9100]["exposure"] == "address"
    found = bm_review.listener_findings(sockets, [22, 80, 443])
    assert titles(found, "P1") == ["Redis on every address, tcp port 6379"]
    assert titles(found, "P2") == ["Unexpected listener on every address, tcp port 8765",
                                   "Unexpected listener on 10.0.0.5, tcp port 9100"]
    allowed = bm_review.listener_findings(sockets, [22, 80, 443], ["10.0.0.5:9100", "8765"])
    assert titles(allowed) == ["Redis on every address, tcp port 6379"]


def test_container_findings():
    found = bm_review.container_findings([
        {"name": "/app-db-1", "image": "postgres:15", "user": "", "privileged": False,
         "cap_add": None, "network_mode": "app_default", "pid_mode": ""},
        {"name": "/app-backend-1", "image": "backend", "user": "1000:1000", "privileged": True,
         "cap_add": ["NET_ADMIN"], "network_mode": "host", "pid_mode": "host"}])
    assert titles(found, "P2") == ["Container app-backend-1 runs privileged"]
    assert titles(found, "P3") == ["Container app-backend-1 has added capabilities",
                                   "Container app-backend-1 shares the host's network",
                                   "Container app-backend-1 shares the host's PID namespace"]
    assert titles(found, "P4") == ["Container app-db-1 runs as root"]


def found_file(path, mode, group="root"):
    return {"path": path, "mode": mode, "pw_name": "root", "gr_name": group}


def test_secret_files():
    files = bm_review.secret_files([
        {"files": [found_file("/etc/bmops/b.json", "0600"),
                   found_file("/etc/bmops/a.json", "0644")]},
        {"skipped_paths": {"/etc/bmops-eda": "not found"}, "files": []},
        {"files": [found_file("/opt/s/db", "0640", "999")]}])
    assert [f["path"] for f in files] == ["/etc/bmops/a.json", "/etc/bmops/b.json", "/opt/s/db"]
    found = bm_review.secret_file_findings(files)
    assert titles(found, "P2") == ["Secret file readable by others: /etc/bmops/a.json"]
    assert titles(found, "P3") == ["Secret file open to its group: /opt/s/db"]
    assert found[0]["action"] == "chmod 0600 /etc/bmops/a.json"


def test_match_cycle_takes_the_longest_dotted_prefix():
    cycles = [{"cycle": "3.1"}, {"cycle": "3.11"}, {"cycle": "3"}]
    assert bm_review.match_cycle("3.11.2", cycles)["cycle"] == "3.11"
    assert bm_review.match_cycle("3.1.4", cycles)["cycle"] == "3.1"
    assert bm_review.match_cycle("3", cycles)["cycle"] == "3"
    assert bm_review.match_cycle("15.18", [{"cycle": "1"}, {"cycle": "15"}])["cycle"] == "15"
    assert bm_review.match_cycle("4.0", cycles) is None


def test_eol_review_with_the_shipped_table():
    review = bm_review.eol_review(
        {"debian": "12", "kernel": "6.1.0-28-amd64", "nginx": "1.22.1", "postgresql": "15.18",
         "redis": "7.0.15", "python": "3.11.2", "certbot": None, "wrk": "4.1"},
        TABLE, TODAY)
    rows = {r["component"]: r for r in review["rows"]}
    assert [r["component"] for r in review["rows"]][:3] == ["debian", "kernel", "nginx"]
    assert rows["debian"]["status"] == "extended"      # regular support ended 2026-06-10
    assert rows["kernel"]["status"] == "extended" and rows["kernel"]["cycle"] == "Debian 12"
    assert rows["postgresql"]["status"] == "supported" and rows["postgresql"]["upgrade"]
    assert rows["redis"]["status"] == "eol"
    assert rows["redis"]["eol_text"] == "ended, date not recorded"
    assert rows["certbot"]["status"] == "not found"
    assert rows["wrk"]["status"] == "unknown"
    found = review["findings"]
    assert "Redis 7.0.15 is past its end of life" in titles(found, "P2")
    assert "Debian 12 is in extended support only" in titles(found, "P3")
    assert "wrk 4.1: not in the end-of-life table" in titles(found, "P4")
    assert review["updated"] == "2026-12-01"


def test_eol_review_soon_past_and_stale_table():
    table = {"updated": "2026-01-01", "products": {"postgresql": {
        "name": "PostgreSQL", "latest": "18",
        "cycles": [{"cycle": "14", "eol": "2027-03-01"}, {"cycle": "13", "eol": "2025-11-13"},
                   {"cycle": "18", "eol": "2030-11-14"}]}}}
    soon = bm_review.eol_review({"postgresql": "14.9"}, table, TODAY)
    assert soon["rows"][0]["status"] == "eol_soon"
    assert titles(soon["findings"], "P3") == ["PostgreSQL 14.9: end of life in under 6 months"]
    assert "The end-of-life table is 336 days old" in titles(soon["findings"], "P4")
    past = bm_review.eol_review({"postgresql": "13.2"}, table, TODAY)
    assert titles(past["findings"], "P2") == ["PostgreSQL 13.2 is past its end of life"]
    latest = bm_review.eol_review({"postgresql": "18.1"}, table, TODAY)
    assert not latest["rows"][0]["upgrade"] and titles(latest["findings"], "P2") == []


WRK = """\
Running 10s test @ https://127.0.0.1/health/ready
  2 threads and 4 connections
  Latency Distribution
     50%   39.50ms
     75%   48.12ms
     90%  955.92us
     99%    1.20s
  489 requests in 5.01s, 198.18KB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:     97.58
"""


def test_benchmark_parsers():
    http = bm_review.wrk_output(WRK)
    assert http == {"requests_per_second": 97.58, "p50_ms": 39.5, "p90_ms": 0.956,
                    "p99_ms": 1200.0, "requests": 489, "non_2xx": 3, "socket_errors": 3}
    pg = bm_review.pgbench_output("latency average = 0.038 ms\n"
                                  "tps = 52024.338453 (without initial connection time)\n")
    assert pg == {"tps": 52024.338453, "latency_ms": 0.038}
    assert bm_review.redis_latency("0 1 0.16 293\n") == {"min_ms": 0.0, "max_ms": 1.0,
                                                         "avg_ms": 0.16, "samples": 293}
    assert bm_review.redis_latency("NOAUTH Authentication required.")["samples"] == 0
    figures = bm_review.bench_figures(http, {}, pg, {"avg_ms": 0.16})
    assert figures["http_ready.p99_ms"] == 1200.0 and figures["pgbench.tps"] == 52024.338
    assert "http_api.p99_ms" not in figures


def test_wrk_errors():
    ok = {"item": "/health/ready", "rc": 0, "stdout": "Requests/sec: 9.0\n"}
    assert bm_review.wrk_errors([ok, {"item": "/x", "skipped": True}]) == []
    assert bm_review.wrk_errors([{"item": "/api", "rc": 0, "stdout": WRK}]) == [
        "wrk /api: 3 of 489 responses not 2xx/3xx"]
    assert bm_review.wrk_errors([{"item": "/api", "rc": 1, "stderr": "unable to connect"}]) == [
        "wrk /api: rc 1 unable to connect"]


def test_bench_compare_flags_regressions_in_the_right_direction():
    before = {"http_ready.p99_ms": 100.0, "http_ready.requests_per_second": 100.0,
              "pgbench.tps": 1000.0, "redis.avg_ms": 0.2, "redis.max_ms": 1.0}
    now = {"http_ready.p99_ms": 125.0, "http_ready.requests_per_second": 79.0,
           "pgbench.tps": 1300.0, "redis.avg_ms": 0.21, "http_api.p50_ms": 3.0,
           "redis.max_ms": 5.0}
    result = bm_review.bench_compare(now, before, 20)
    worse = [r["name"] for r in result["rows"] if r["worse"]]
    assert worse == ["http_ready.p99_ms", "http_ready.requests_per_second"]
    assert {f["priority"] for f in result["findings"]} == {"P3"}
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["pgbench.tps"]["change_percent"] == 30.0 and not rows["pgbench.tps"]["worse"]
    assert rows["http_api.p50_ms"]["previous"] is None
    assert bm_review.bench_compare(now, {}, 20)["findings"] == []


def test_step_findings():
    assert titles(bm_review.step_findings(["wrk /health/ready"], "benchmark"), "P3") == [
        "Review step failed: wrk /health/ready"]
