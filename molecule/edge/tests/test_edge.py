# SPDX-License-Identifier: Apache-2.0
"""Verify nginx_proxy + certbot after converge (and idempotence) against Pebble."""

from __future__ import annotations

import json
import re

import pytest
from conftest import CA_BUNDLE, CERT, DOMAIN, SKIP_STACK, SMTP, docker, served, wait_for

testinfra_hosts = ["ansible://bmops-edge-host"]

CURL = f"curl -sS --max-time 10 --resolve {DOMAIN}:443:127.0.0.1 --resolve {DOMAIN}:80:127.0.0.1"


def test_nginx_running_and_enabled(host):
    nginx = host.service("nginx")
    assert nginx.is_running and nginx.is_enabled
    assert host.socket("tcp://0.0.0.0:80").is_listening
    assert host.socket("tcp://0.0.0.0:443").is_listening


def test_serves_the_pebble_issued_certificate(host):
    cert = served(host)
    assert "Pebble" in cert["issuer"], cert
    # nginx reads stable paths that certbot pointed at its live directory
    key = CERT.replace("fullchain", "privkey")
    assert host.check_output(f"readlink {CERT}") == f"/etc/letsencrypt/live/{DOMAIN}/fullchain.pem"
    assert host.check_output(f"readlink {key}") == f"/etc/letsencrypt/live/{DOMAIN}/privkey.pem"


def test_http_redirects_to_https(host):
    out = host.check_output(f"{CURL} -o /dev/null -w '%{{http_code}} %{{redirect_url}}' "
                            f"http://{DOMAIN}/health/ready?x=1")
    assert out == f"301 https://{DOMAIN}/health/ready?x=1"


def test_acme_challenge_is_served_over_http(host):
    challenge = "/var/www/letsencrypt/.well-known/acme-challenge/bmops-edge-probe"
    host.check_output(f"echo edge-token > {challenge}")
    try:
        out = host.check_output(
            f"{CURL} -w ' %{{http_code}}' http://{DOMAIN}/.well-known/acme-challenge/bmops-edge-probe")
    finally:
        host.check_output(f"rm -f {challenge}")
    assert out == "edge-token\n 200"


def test_health_ready_through_nginx(host):
    # -k: the Pebble root is not in the host's trust store (the issuer is checked above)
    out = host.check_output(f"{CURL} -k -D - -o /tmp/bmops-edge-ready.json -w '%{{http_code}}' "
                            f"https://{DOMAIN}/health/ready")
    headers = out.lower()
    assert out.rstrip().endswith("200")
    assert json.loads(host.file("/tmp/bmops-edge-ready.json").content_string)["status"] == "ok"
    assert "strict-transport-security: max-age=63072000" in headers
    assert "x-content-type-options: nosniff" in headers
    assert "x-frame-options: deny" in headers
    assert "server: nginx\r\n" in headers  # server_tokens off: no version


@pytest.mark.parametrize("flag,accepted", [
    ("-tls1", False), ("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)])
def test_only_tls12_and_tls13(host, flag, accepted):
    # the client allows legacy protocols (SECLEVEL=0): a refusal is the server's
    cmd = host.run(f"echo | openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} "
                   f"{flag} -cipher 'DEFAULT:@SECLEVEL=0'")
    handshake = cmd.rc == 0 and "Cipher is (NONE)" not in cmd.stdout
    assert handshake is accepted, cmd.stdout + cmd.stderr


def test_logrotate_keeps_nginx_logs_90_days(host):
    conf = host.file("/etc/logrotate.d/nginx").content_string
    for line in ("daily", "rotate 90", "compress", "delaycompress", "postrotate"):
        assert line in conf
    assert host.run("logrotate -d /etc/logrotate.d/nginx").rc == 0


def test_renewal_cron_and_deploy_hook(host):
    cron = host.file("/etc/cron.d/bmops-certbot-renew").content_string
    assert "0 0 1 * * root certbot renew --quiet" in cron
    assert f'REQUESTS_CA_BUNDLE="{CA_BUNDLE}"' in cron
    hook = host.file("/etc/letsencrypt/renewal-hooks/deploy/50-bmops-nginx-reload")
    assert hook.mode == 0o755 and "nginx -t" in hook.content_string
    renewal = host.file(f"/etc/letsencrypt/renewal/{DOMAIN}.conf").content_string
    assert "authenticator = webroot" in renewal and "pebble:14000" in renewal


def test_forced_renewal_reloads_nginx_with_a_new_serial(host, run_playbook):
    before = served(host)
    # playbooks/certificate_renew.yml (what AWX schedules), forced
    rc, out, raw = run_playbook("../../playbooks/certificate_renew.yml",
                                "-e", "certbot_renew_force=true")
    assert rc == 0, raw
    assert sum(s["changed"] for s in out["stats"].values()) == 1, raw
    after = wait_for(lambda: (s := served(host))["serial"] != before["serial"] and s)
    assert after, "nginx still serves the old serial after the renewal"
    assert "Pebble" in after["issuer"]
    assert host.service("nginx").is_running


def test_certificate_check_is_ok_for_the_issued_certificate(host, run_playbook):
    rc, _, raw = run_playbook("check_certificates.yml")
    assert rc == 0, raw
    report = json.loads(host.file("/var/lib/bmops/reports/certificates-latest.json").content_string)
    text = json.dumps(report)
    assert "breach" not in [c["status"] for c in report["checks"]], text
    names = {c["item"] for c in report["checks"]}
    assert CERT in names and any("127.0.0.1:443" in n for n in names), names


def test_five_days_left_is_urgent_and_mailed(host, run_playbook):
    pem = "/tmp/bmops-edge-5days.pem"
    host.check_output(
        f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 5 "
        f"-subj /CN=expiring.{DOMAIN} -keyout /tmp/bmops-edge-5days.key -out {pem} 2>/dev/null")
    docker("exec", SMTP, "sh", "-c", "rm -f /srv/mail/*")
    rc, _, raw = run_playbook("check_certificates.yml", "-e", json.dumps({
        "certbot_check_files": [pem], "certbot_check_endpoints": [],
        "health_report_mail_to": ["ops@backup-mgmt.edge.test"],
        "health_report_mail_host": "smtp", "health_report_mail_port": 25,
        "health_report_mail_secure": "never"}))
    assert rc != 0, "a certificate with 5 days left must fail the check"
    # compared unrounded (the report's value is just under 5); shown with two decimals,
    # which a certificate issued seconds ago rounds to 5.00
    assert re.search(rf"URGENT: certificate {re.escape(pem)} expires in (4\.\d+|5\.00) days",
                     raw), raw
    report = json.loads(host.file("/var/lib/bmops/reports/certificates-latest.json").content_string)
    check = report["checks"][0]
    assert check["status"] == "breach" and check["notify"] and 4 < check["value"] < 5
    mails = wait_for(lambda: docker("exec", SMTP, "sh", "-c", "cat /srv/mail/*.eml",
                                    check=False).stdout, timeout=15)
    assert "BREACH" in mails and "ops@backup-mgmt.edge.test" in mails


def test_check_mode_reports_no_change(host, run_playbook):
    rc, out, raw = run_playbook("converge.yml", *SKIP_STACK, "--check")
    assert rc == 0, raw
    stats = out["stats"]["bmops-edge-host"]
    assert stats["changed"] == 0 and stats["failures"] == 0, stats


def test_timer_renewals_get_the_ca_bundle(host):
    """certbot.timer runs certbot.service: the CA bundle reaches it through a drop-in."""
    env = host.check_output("systemctl show certbot.service -p Environment")
    assert f"REQUESTS_CA_BUNDLE={CA_BUNDLE}" in env, env


def served_names(host) -> set[str]:
    out = host.check_output(
        f"echo | openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} 2>/dev/null"
        " | openssl x509 -noout -ext subjectAltName")
    return set(re.findall(r"DNS:([^,\s]+)", out))


def test_a_changed_domain_list_re_issues_the_certificate(host, run_playbook):
    """A new name in certbot_extra_domains re-issues the certificate (no `creates:`
    skip); the same names again change nothing; the original list re-issues back."""
    extra = f"www.{DOMAIN}"
    # the address on the scenario's network (hostname -I starts with docker0's)
    ip = host.check_output("ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'")
    host.check_output(f"curl -sS -X POST -d '{{\"host\": \"{extra}.\", \"addresses\": "
                      f"[\"{ip}\"]}}' http://challtestsrv:8055/add-a")
    try:
        rc, out, raw = run_playbook("converge.yml", *SKIP_STACK, "-e",
                                    json.dumps({"certbot_extra_domains": [extra]}))
        assert rc == 0, raw
        assert wait_for(lambda: served_names(host) == {DOMAIN, extra}), served_names(host)
        rc, out, raw = run_playbook("converge.yml", *SKIP_STACK, "-e",
                                    json.dumps({"certbot_extra_domains": [extra]}))
        assert rc == 0 and out["stats"]["bmops-edge-host"]["changed"] == 0, raw
    finally:
        rc, out, raw = run_playbook("converge.yml", *SKIP_STACK)
    assert rc == 0, raw
    assert wait_for(lambda: served_names(host) == {DOMAIN}), served_names(host)
