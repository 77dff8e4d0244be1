# SPDX-License-Identifier: Apache-2.0
"""Role monitoring live (issue 23): a monitoring host watches the converged stack.

One more systemd host (``<stack>-prom``, group bm_monitoring) on the test network
runs Prometheus and Alertmanager from Debian's packages; the stack host gets the
exporters (site.yml, monitoring tags only). Faults are real: the backend is
stopped, a backup fails, the whole app host container is stopped; the alerts
must reach the SMTP sink and a webhook receiver (an HTTP server on the
monitoring host that keeps each POST as a file).

The first response (issue 22): ansible-rulebook runs extensions/eda/rulebooks/bmops.yml
on the controller side (here the test controller, listening on the test
network's gateway); Alertmanager posts P1/P2 alerts to it and, with nobody at
the keyboard, playbooks/respond_alert.yml triages the host and mails the report.
"""

from __future__ import annotations

import email.header
import http.server
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml
from conftest import (
    KEEP,
    ROOT,
    STACK_HOST,
    docker,
    hosts,
    run_playbook,
    start_host,
    write_inventory_text,
)

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


EDA_TOKEN = secrets.token_urlsafe(24)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


EDA_PORT = _free_port()
SHORT_PORT = _free_port()


def inventory_text(smtp_ip: str, gateway: str, state_file: str) -> str:
    return f"""all:
  vars:
    ansible_connection: community.docker.docker
    ansible_python_interpreter: /usr/bin/python3
    # the operators read Japanese: alert summaries, response times and mails in ja
    bm_language: ja
    # the first response (playbooks/respond_alert.yml, run by ansible-rulebook)
    alert_response_mail_to: [oncall@backup-mgmt.demo.test]
    alert_response_mail_host: {smtp_ip}
    alert_response_mail_port: 25
    alert_response_mail_secure: never
    alert_response_webhooks:
      - name: chat
        url: http://127.0.0.1:{SHORT_PORT}/short
    alert_response_state_file: {state_file}
    alert_response_host_interval: 20
    alert_response_remediations:
      - alertname: BmContainerDown
        service: celery
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
    bm_eda:
      hosts:
        {MON_HOST}: {{}}
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
        bm_eda_url: http://{gateway}:{EDA_PORT}/endpoint
        bm_eda_token: {EDA_TOKEN}
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
    start_host(MON_HOST, it_network)
    workdir = tmp_path_factory.mktemp("mon")
    gateway = docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}",
                     it_network).stdout.strip()
    inv = write_inventory_text(workdir / "inventory", inventory_text(
        smtp_sink.ip, gateway, str(workdir / "eda-state.json")))
    m = Mon(inv, workdir, smtp_sink)
    m.gateway = gateway
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


class Responder:
    """ansible-rulebook as the bmops-eda service runs it, plus a receiver of the short posts."""

    def __init__(self, mon, workdir):
        self.short: list[dict] = []
        self.log = workdir / "rulebook.log"
        (workdir / "eda-vars.yml").write_text(
            f"bmops_eda_listen_address: {mon.gateway}\nbmops_eda_port: {EDA_PORT}\n")
        env = dict(os.environ, BMOPS_EDA_TOKEN=EDA_TOKEN, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                   PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
        self.proc = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "ansible-rulebook"),
             "-r", "extensions/eda/rulebooks/bmops.yml", "-i", str(mon.inventory),
             "--vars", str(workdir / "eda-vars.yml"), "--env-vars", "BMOPS_EDA_TOKEN", "-v"],
            cwd=ROOT, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        short = self.short

        class Short(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                short.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", SHORT_PORT), Short)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection((mon.gateway, EDA_PORT), timeout=1).close()
                break
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("ansible-rulebook does not listen:\n"
                                         + self.text()) from exc
                time.sleep(1)

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self):
        self.server.shutdown()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def responder(mon, tmp_path_factory):
    r = Responder(mon, tmp_path_factory.mktemp("eda"))
    yield r
    r.stop()


def first_response_mails(sink, must=(), reply=False):
    """The first-response mails (respond_alert.yml) whose body has every string of MUST."""
    found = []
    for m in sink.messages():
        subj = subject(m)
        if "[bmops 一次対応]" not in subj or subj.startswith("Re: ") != reply:
            continue
        body = m.get_payload(decode=True) if not m.is_multipart() else \
            m.get_payload()[0].get_payload(decode=True)
        text = body.decode("utf-8", "replace")
        if all(s in text for s in must):
            found.append((m, text))
    return found


def running(stack, service) -> bool:
    out = stack.compose("ps", "--status", "running", "--format", "{{.Service}}", check=False)
    return service in out.stdout.split()


def test_backend_down_pages_mails_and_is_triaged_with_nobody_at_the_keyboard(
        mon, stack, smtp_sink, responder):
    mon.clear()
    responder.short.clear()
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
        # the summary names the manual's item, the value and the limit, in Japanese
        assert alert["annotations"]["summary"].startswith("システム稼働確認 GET ")
        assert "（正常基準: 200、0 = 応答なし）" in alert["annotations"]["summary"]
        mail = mon.wait("the P1 mail", lambda: mails_about(smtp_sink, "BmReadyNotOK",
                                                             "FIRING"), 120)[0]
        assert subject(mail).startswith("[P1 至急] FIRING BmReadyNotOK")
        body = next(part.get_payload(decode=True).decode("utf-8") for part in mail.walk()
                    if part.get_content_type() == "text/plain")
        assert "対応期限: 30 分以内" in body and "システム稼働確認 GET " in body, body
        print(f"detection_latency_p1_seconds: {latency:.0f}")
        # the first response (issue 22): triage mailed by ansible-rulebook's playbook
        try:
            triage, text = mon.wait("the triage mail", lambda: first_response_mails(
                smtp_sink, must=("backend", "ログの最終行", "切り分け（読み取りのみ")), 240)[0]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- ansible-rulebook:\n{responder.text()}") from None
        print(f"fault_to_triage_mail_seconds: {time.monotonic() - started:.0f}")
        assert stack.host in subject(triage) and "P1" in subject(triage)
        assert triage["References"].startswith("<bmops-alert-")
        # the postmortem draft's timeline starts with the alert of the thread (the first
        # P1 to fire: BmReadyNotOK or BmContainerDown), in Japanese
        assert re.search(r"\| アラート Bm\w+（P1）発報: ", text), text[:3000]
        assert "自動復旧: なし" in text  # not enabled for the backend
        short = mon.wait("the short post", lambda: [h for h in responder.short
                                                    if h["status"] == "firing"], 60)[0]
        assert short["host"] == stack.host and short["severity"] == "P1"
        assert re.match(rf"\[bmops P1\] {stack.host} で Bm\w+ が発生: 切り分け ",
                        short["text"]), short["text"]
    finally:
        stack.compose("start", "backend")
    stack.wait_ready()
    mon.wait("the resolved mail", lambda: mails_about(smtp_sink, "BmReadyNotOK", "RESOLVED"),
             120)
    assert mon.wait("the resolved webhook",
                    lambda: hooks_about(mon, "BmReadyNotOK", "resolved"), 60)
    thread = triage["References"]
    assert mon.wait("the resolved note in the same thread", lambda: [
        m for m, _ in first_response_mails(smtp_sink, must=("解消",), reply=True)
        if m["In-Reply-To"] == thread], 180)
    log = responder.text() + "".join(t for _, t in first_response_mails(smtp_sink))
    assert EDA_TOKEN not in log and "demo-only" not in log


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


def test_a_stopped_celery_worker_is_started_once_then_left_to_a_person(mon, stack, smtp_sink,
                                                                        responder):
    smtp_sink.clear()
    stack.compose("stop", "celery")
    try:
        mon.wait("the remediation mail", lambda: first_response_mails(
            smtp_sink, must=("celery", "自動復旧: celery を起動しました", "自動復旧の後")),
            240)
        assert running(stack, "celery")
        mon.wait("the resolved note", lambda: first_response_mails(
            smtp_sink, must=("解消", "BmContainerDown"), reply=True), 180)
        smtp_sink.clear()
        stack.compose("stop", "celery")  # again, within the hour
        _, text = mon.wait("the refusal", lambda: first_response_mails(
            smtp_sink, must=("celery", "見送り", "bmops が起動済み")), 240)[0]
        assert "自動復旧の後" not in text
        assert not running(stack, "celery")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- ansible-rulebook:\n{responder.text()}") from None
    finally:
        stack.compose("start", "celery")
    stack.wait_ready()


def _eda_wheels(host: str, out) -> tuple[str, str]:
    """The bmops wheel of this tree, and a wheelhouse for HOST's Python (cached)."""
    import hashlib
    import tomllib

    wheel_dir = out / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheel_dir), str(ROOT)], check=True)
    wheel = next(wheel_dir.glob("bmops-*.whl"))
    pyver = docker("exec", host, "python3", "-c",
                   "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins += yaml.safe_load((ROOT / "roles" / "eda_responder" / "defaults" / "main.yml")
                           .read_text())["eda_responder_packages"]
    key = hashlib.sha256(json.dumps([pyver, pins]).encode()).hexdigest()[:12]
    house = Path(os.environ.get("BMOPS_CACHE", "/var/cache/bmops")) / "wheels" / f"eda-{key}"
    if not (house / ".complete").exists():
        platforms = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                                 "manylinux2014_x86_64", "linux_x86_64") for a in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                        "--python-version", pyver, "--implementation", "cp", *platforms,
                        "-d", str(house), *pins], check=True)
        (house / ".complete").touch()
    return str(wheel), str(house)


@pytest.fixture(scope="module")
def eda_service(mon, tmp_path_factory):
    """playbooks/eda_responder.yml on the monitoring host (group bm_eda)."""
    workdir = tmp_path_factory.mktemp("eda-service")
    wheel, house = _eda_wheels(MON_HOST, workdir)
    extravars = {"eda_responder_bmops_wheel": wheel, "eda_responder_wheelhouse": house}
    first = run_playbook("eda_responder", mon.inventory, workdir / "run1", extravars=extravars)
    if first.rc != 0:
        pytest.fail("eda_responder.yml did not converge:\n" + first.stdout[-5000:], pytrace=False)
    return workdir, extravars


def eda_post(mon, body: str, token: str | None) -> str:
    auth = f"-H 'Authorization: Bearer {token}'" if token else ""
    return mon.sh(f"curl -s -o /dev/null -w '%{{http_code}}' {auth} "
                  "-H 'Content-Type: application/json' "
                  f"--data-binary '{body}' http://127.0.0.1:5000/endpoint", check=False).stdout


def test_the_first_response_service_runs_under_systemd_and_comes_back(mon, eda_service):
    workdir, extravars = eda_service
    second = run_playbook("eda_responder", mon.inventory, workdir / "run2", extravars=extravars)
    assert second.rc == 0 and second.changed_tasks() == [], second.stdout[-3000:]
    check = run_playbook("eda_responder", mon.inventory, workdir / "run3", extravars=extravars,
                         cmdline="--check")
    assert check.rc == 0 and check.changed_tasks() == [], check.stdout[-3000:]
    mon.wait("bmops-eda listening", lambda: eda_post(mon, "{}", None) == "401", 120)
    # the token: in a 0600 root file, on no command line, in no job event
    assert mon.sh("stat -c '%a %U' /etc/bmops-eda/eda.env").stdout.split() == ["600", "root"]
    assert EDA_TOKEN not in mon.sh("ps -eo args").stdout
    assert all(EDA_TOKEN not in r.stdout for r in (second, check))
    p3 = json.dumps({"status": "firing", "alerts": [{
        "status": "firing", "fingerprint": "eda-p3", "startsAt": "2026-12-02T01:00:00Z",
        "labels": {"alertname": "BmErrorLogLines", "severity": "P3", "bm_host": STACK_HOST}}]})
    assert eda_post(mon, p3, EDA_TOKEN) == "200"
    assert eda_post(mon, "{broken", EDA_TOKEN) == "400"
    mon.wait("the P3 logged and ignored", lambda: "no first response for a P3/P4 alert" in
             mon.sh("journalctl -u bmops-eda --no-pager -o cat", check=False).stdout, 60)
    # killed: systemd starts it again
    pid = mon.sh("systemctl show -p MainPID --value bmops-eda").stdout.strip()
    mon.sh(f"kill -9 {pid}")
    mon.wait("bmops-eda started again", lambda: mon.sh(
        "systemctl show -p MainPID --value bmops-eda").stdout.strip() not in ("0", pid), 60)
    mon.wait("bmops-eda listening again", lambda: eda_post(mon, "{}", None) == "401", 120)
    assert EDA_TOKEN not in mon.sh("journalctl -u bmops-eda --no-pager -o cat",
                                   check=False).stdout


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
