# SPDX-License-Identifier: Apache-2.0
"""Bad inputs stop with a clear message; the served certificate, the nginx
configuration and the running nginx stay as they were.

The stack roles are skipped by tag to keep the runs cheap: their inputs are
not under test here (the default scenario covers them)."""

from __future__ import annotations

import pytest
from conftest import DOMAIN, SITE, SKIP_STACK, failures, served

testinfra_hosts = ["ansible://bmops-edge-host"]

BROKEN = "/etc/nginx/conf.d/zz-bmops-edge-broken.conf"


def _edge_state(host) -> tuple:
    pid = host.check_output("systemctl show nginx --property=MainPID --value")
    return (served(host)["serial"], pid,
            host.check_output(f"sha256sum {SITE} /etc/nginx/ssl/{DOMAIN}/fullchain.pem"))


def _run_bad(host, run_playbook, playbook, *extra) -> str:
    before = _edge_state(host)
    rc, out, raw = run_playbook(playbook, *extra)
    assert rc != 0, "the play should have failed"
    assert host.service("nginx").is_running
    assert _edge_state(host) == before, "the certificate, the configuration or nginx changed"
    return " ".join(f"{task}: {msg}" for task, msg in failures(out)) or raw


@pytest.mark.parametrize("domain", ["not_a_domain", "https://backup-mgmt.example.com", "localhost",
                                    "*.example.com", "192.0.2.10"])
def test_invalid_domain(host, run_playbook, domain):
    msg = _run_bad(host, run_playbook, "converge.yml", *SKIP_STACK, "-e", f"bm_domain={domain}")
    assert "not a fully qualified domain name" in msg and "Nothing was changed" in msg


def test_unreachable_acme_server(host, run_playbook):
    msg = _run_bad(host, run_playbook, "converge.yml", *SKIP_STACK,
                   "-e", "certbot_acme_directory=https://pebble:14999/dir")
    assert "https://pebble:14999/dir cannot be used" in msg
    assert "current certificate and the running nginx are untouched" in msg


@pytest.fixture
def broken_snippet(host):
    host.check_output(f"echo 'this is not nginx;' > {BROKEN}")
    yield BROKEN
    host.check_output(f"rm -f {BROKEN}")
    assert host.run("nginx -t").rc == 0


def test_broken_snippet_stops_the_handler_reload(host, run_playbook, broken_snippet):
    msg = _run_bad(host, run_playbook, "notify_nginx.yml")
    assert "Test the nginx configuration" in msg and broken_snippet in msg


def test_broken_snippet_stops_a_template_change(host, run_playbook, broken_snippet):
    msg = _run_bad(host, run_playbook, "converge.yml", *SKIP_STACK,
                   "-e", "nginx_proxy_client_max_body_size=20m")
    assert "Write the site configuration" in msg and broken_snippet in msg


def test_broken_snippet_stops_the_deploy_hook_reload(host, broken_snippet):
    before = _edge_state(host)
    hook = host.run(f"RENEWED_LINEAGE=/etc/letsencrypt/live/{DOMAIN} "
                    "/etc/letsencrypt/renewal-hooks/deploy/50-bmops-nginx-reload")
    assert hook.rc != 0
    assert "NOT reloaded" in hook.stderr and broken_snippet in hook.stderr
    assert _edge_state(host) == before
