# SPDX-License-Identifier: Apache-2.0
"""Role monitoring live (issue 23): a monitoring host watches the converged stack.

One more systemd host (``<stack>-prom``, group bm_monitoring) on the test network
runs Prometheus and Alertmanager from Debian's packages; the stack host gets the
exporters (site.yml, monitoring tags only). Faults are real: the backend is
stopped, a backup fails, the whole app host container is stopped; the alerts
must reach the SMTP sink and a webhook receiver (an HTTP server on the
monitoring host that keeps each POST as a file).
"""

from __future__ import annotations

import email.header
import json
import subprocess
import time
import urllib.parse

import pytest
from conftest import KEEP, STACK_HOST, docker, hosts, run_playbook, write_inventory_text

MON_HOST = f"{STACK_HOST}-prom"
HOOK_PORT = 9099
HOOK_DIR = "/srv/hooks"
TAGS = "monitoring_install,monitoring_configure"
# The webhook receiver: every POST body kept as /srv/hooks/<n>.json.
HOOK_SERVER = f"""
import http.server, itertools, os
os.makedirs({HOOK_DIR!r}, exist_ok=True)
n = itertools.count(len(os.listdir({HOOK_DIR!r})))
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        with open(os.path.join({HOOK_DIR!r}, '%06d.json' % next(n)), 'wb') as fh:
            fh.write(body)
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', {HOOK_PORT}), H).serve_forever()
"""


def inventory_text(smtp_ip: str) -> str:
    return f"""all:
  vars:
    ansible_connection: community.docker.docker
    ansible_python_interpreter: /usr/bin/python3
    # short intervals for the tests; the manual's one minute for P1 stays
    monitoring_scrape_interval: 5s
    monitoring_evaluation_interval: 5s
    monitoring_group_wait: 5s
    monitoring_p1_group_wait: 2s
    monitoring_group_interval: 10s
    monitoring_for_default: 10s
    monitoring_app_metrics_interval: 5s
  children:
    bm_app:
      hosts:
        {STACK_HOST}: {{}}
    bm_monitoring:
      hosts:
        {MON_HOST}: {{}}
      vars:
        bm_domain: backup-mgmt.demo.test
        bm_certbot_enabled: false
        bm_smtp_host: {smtp_ip}
        # the SMTP sink speaks no TLS (real relays: STARTTLS required, the default)
        monitoring_mail_require_tls: false
        monitoring_mail_to: [oncall@backup-mgmt.demo.test]
        monitoring_pager_webhooks:
          - name: pager
            url: http://127.0.0.1:{HOOK_PORT}/hook
"""


class Mon:
    def __init__(self, inventory, workdir, sink):
        self.inventory = inventory
        self.workdir = workdir
        self.sink = sink
        self.runs = 0

    def converge(self, **kw):
        self.runs += 1
        return run_playbook("site", self.inventory, self.workdir / f"mon{self.runs:02d}",
                            tags=TAGS, **kw)

    def sh(self, script, check=True):
        return docker("exec", MON_HOST, "sh", "-ec", script, check=check)

    def api(self, path):
        out = self.sh(f"curl -sf 'http://127.0.0.1:9090{path}'").stdout
        return json.loads(out)["data"]

    def query(self, promql):
        return self.api("/api/v1/query?query=" + urllib.parse.quote(promql))["result"]

    def clear(self):
        self.sink.clear()
        self.sh(f"rm -f {HOOK_DIR}/*.json")

    def hooks(self):
        names = self.sh(f"ls -1 {HOOK_DIR} 2>/dev/null || true").stdout.split()
        return [json.loads(self.sh(f"cat {HOOK_DIR}/{n}").stdout) for n in sorted(names)]

    def wait(self, what, predicate, timeout):
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(2)


def subject(mail) -> str:
    return str(email.header.make_header(email.header.decode_header(mail["Subject"])))


def mails_about(sink, alertname, status):
    return [m for m in sink.messages()
            if alertname in subject(m) and status in subject(m)]


def hooks_about(mon, alertname, status):
    return [h for h in mon.hooks() if h.get("status") == status
            and any(a["labels"].get("alertname") == alertname for a in h.get("alerts", []))]


@pytest.fixture(scope="module")
def mon(stack, smtp_sink, it_network, tmp_path_factory):
    try:
        hosts.up(MON_HOST, network=it_network)
    except hosts.HostError as exc:
        pytest.fail(str(exc), pytrace=False)
    workdir = tmp_path_factory.mktemp("mon")
    inv = write_inventory_text(workdir / "inventory", inventory_text(smtp_sink.ip))
    m = Mon(inv, workdir, smtp_sink)
    result = m.converge()
    if result.rc != 0:
        pytest.fail("site.yml (monitoring) did not converge:\n" + result.stdout[-5000:],
                    pytrace=False)
    m.first = result
    docker("exec", "-d", MON_HOST, "python3", "-c", HOOK_SERVER)
    yield m
    if not KEEP:
        hosts.down(MON_HOST)


def test_converges_twice_without_change_and_check_mode_changes_nothing(mon):
    second = mon.converge()
    assert second.rc == 0, second.stdout[-3000:]
    assert second.changed_tasks() == []
    check = mon.converge(cmdline="--check")
    assert check.rc == 0, check.stdout[-3000:]
    assert check.changed_tasks() == []


def test_every_target_is_up_and_no_secret_is_on_a_command_line(mon, stack):
    seen = {}

    def all_up():
        seen["up"] = {x["metric"].get("job"): x["value"][1] for x in mon.query("up") or []}
        return len(seen["up"]) >= 6 and all(v == "1" for v in seen["up"].values())

    try:
        mon.wait("every target up", all_up, 120)
    except AssertionError as exc:  # say which target, and why Prometheus thinks so
        targets = mon.sh("curl -s http://127.0.0.1:9090/api/v1/targets").stdout[-3000:]
        raise AssertionError(f"{exc}: up = {seen.get('up')}; targets: {targets}") from None
    ps = stack.sh("ps -eo args").stdout
    assert "demo-only" not in ps  # the demo passwords
    modes = stack.sh("stat -c '%a %n' /etc/default/prometheus-postgres-exporter "
                     "/etc/default/prometheus-redis-exporter").stdout
    assert modes.split()[0] == "600" and modes.split()[2] == "600"
    # the readiness probe through nginx answers 200
    assert mon.query('probe_http_status_code{job="bm_ready"}')[0]["value"][1] == "200"
    # application metrics are fresh (the daily check's queries)
    assert mon.query("time() - bmops_app_metrics_timestamp_seconds < 60")


def test_every_dashboard_panel_query_returns_series(mon, stack):
    """No Grafana here: every panel's PromQL runs against the live Prometheus."""
    from conftest import ROOT
    # the daily check writes bmops_daily.prom, a backup bmops_backup.prom
    assert docker("exec", stack.host, "/usr/local/sbin/bmops-backup", "backup").returncode == 0
    failures = []
    deadline = time.monotonic() + 60
    for path in sorted((ROOT / "roles" / "monitoring" / "files" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                while True:
                    try:
                        result = mon.query(target["expr"])
                    except (json.JSONDecodeError, KeyError, subprocess.CalledProcessError) as exc:
                        result, error = [], str(exc)
                    else:
                        error = "no series"
                    if result or time.monotonic() > deadline:
                        break
                    time.sleep(3)
                if not result:
                    failures.append(f"{path.name}: {panel['title']}: {target['expr']}: {error}")
    assert not failures, "\n".join(failures)


def test_backend_down_pages_and_mails_p1_then_resolves(mon, stack, smtp_sink):
    mon.clear()
    started = time.monotonic()
    stack.compose("stop", "backend")
    try:
        hook = mon.wait("the P1 webhook", lambda: hooks_about(mon, "BmReadyNotOK", "firing"),
                        180)[0]
        latency = time.monotonic() - started
        alert = next(a for a in hook["alerts"] if a["labels"]["alertname"] == "BmReadyNotOK")
        assert alert["labels"]["severity"] == "P1"
        assert alert["annotations"]["runbook_url"].endswith("#bmreadynotok")
        assert "30 分以内" in alert["annotations"]["response"]
        assert "limit: 200" in alert["annotations"]["summary"]
        mail = mon.wait("the P1 mail", lambda: mails_about(smtp_sink, "BmReadyNotOK",
                                                             "FIRING"), 120)[0]
        assert subject(mail).startswith("[P1 至急] FIRING BmReadyNotOK")
        print(f"detection_latency_p1_seconds: {latency:.0f}")
    finally:
        stack.compose("start", "backend")
    stack.wait_ready()
    mon.wait("the resolved mail", lambda: mails_about(smtp_sink, "BmReadyNotOK", "RESOLVED"),
             120)
    assert mon.wait("the resolved webhook",
                    lambda: hooks_about(mon, "BmReadyNotOK", "resolved"), 60)


def test_failed_backup_fires_p2(mon, stack, smtp_sink):
    # start from a good backup: the alert quiet, in Prometheus and in Alertmanager
    assert docker("exec", stack.host, "/usr/local/sbin/bmops-backup", "backup").returncode == 0
    mon.wait("BmBackupFailed quiet", lambda: not mon.query(
        'ALERTS{alertname="BmBackupFailed"} or bmops_backup_last_run_success == 0'), 90)
    time.sleep(15)  # one Alertmanager group_interval: the resolved state is flushed
    mon.clear()
    stack.compose("stop", "db")
    try:
        rc = docker("exec", stack.host, "/usr/local/sbin/bmops-backup", "backup",
                    check=False).returncode
        assert rc != 0
    finally:
        stack.compose("start", "db")
    mail = mon.wait("the P2 backup mail",
                    lambda: mails_about(smtp_sink, "BmBackupFailed", "FIRING"), 120)[0]
    assert subject(mail).startswith("[P2] FIRING BmBackupFailed")
    stack.wait_ready()
    assert docker("exec", stack.host, "/usr/local/sbin/bmops-backup", "backup").returncode == 0


def test_app_host_down_is_a_p1_from_the_monitoring_host(mon, stack):
    mon.clear()
    docker("stop", stack.host)
    try:
        hook = mon.wait("the host-down webhook",
                        lambda: hooks_about(mon, "BmHostDown", "firing"), 180)[0]
        alert = next(a for a in hook["alerts"] if a["labels"]["alertname"] == "BmHostDown")
        assert alert["labels"]["severity"] == "P1"
        assert alert["labels"]["bm_host"] == stack.host
    finally:
        # the same host comes back (hosts.up would recreate a stopped one fresh)
        docker("start", stack.host)
        stack.wait_ready(240)
