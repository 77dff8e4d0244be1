# SPDX-License-Identifier: Apache-2.0
"""certbot role filter: registered x509_certificate_info / get_certificate
results -> certificate entries for the bm_checks evaluation."""

from __future__ import annotations

import importlib.util

import pytest
from helpers import ROOT

_PATH = (ROOT / "roles" / "certbot" / "filter_plugins"
         / "certbot_certificates.py")
_spec = importlib.util.spec_from_file_location("certbot_certificates", _PATH)
certbot_certificates = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(certbot_certificates)

NOW = "2026-11-28T12:00:00Z"
EP = {"name": "example (nginx)", "host": "127.0.0.1", "port": 443, "server_name": "example.com"}


@pytest.mark.parametrize("res,days,error", [
    ({"item": "/c.pem", "not_after": "20261203120000Z"}, 5, None),
    ({"item": "/c.pem", "not_after": "20261203115959Z"}, 4, None),       # rounds down
    ({"item": "/c.pem", "not_after": "20261127120000Z"}, -1, None),      # expired
    ({"item": "/c.pem", "failed": True, "msg": "No such file"}, None, "No such file"),
    ({"item": "/c.pem", "not_after": "garbage"}, None, "unreadable notAfter 'garbage'"),
    ({"item": "/c.pem", "skipped": True}, None, "certificate could not be read"),
])
def test_files(res, days, error):
    [entry] = certbot_certificates.certificate_days({"results": [res]}, None, now=NOW)
    assert entry["name"] == entry["path"] == entry["path_or_endpoint"] == "/c.pem"
    assert entry["endpoint"] is None
    assert entry["days_left"] == days and entry["error"] == error


def test_endpoint_with_issuer_and_serial():
    res = {"item": EP, "not_after": "20270128120000Z", "serial_number": 255,
           "issuer": {"commonName": "Pebble Intermediate CA 1a2b"}}
    [entry] = certbot_certificates.certificate_days([], {"results": [res]}, now=NOW)
    assert entry == {
        "name": "example (nginx)", "path_or_endpoint": "127.0.0.1:443 (example.com)",
        "path": None, "endpoint": "127.0.0.1:443 (example.com)",
        "not_after": "2027-01-28T12:00:00+00:00", "days_left": 61,
        "seconds_left": 61 * 86400, "issuer": "Pebble Intermediate CA 1a2b", "serial": "ff",
        "error": None}


def test_endpoint_refused_and_order():
    files = {"results": [{"item": "/a.pem", "not_after": "20261228120000Z"}]}
    eps = {"results": [{"item": {"host": "127.0.0.1", "port": 8443}, "failed": True,
                        "msg": "Connection refused"}]}
    out = certbot_certificates.certificate_days(files, eps, now=NOW)
    assert [e["name"] for e in out] == ["/a.pem", "127.0.0.1:8443"]
    assert out[0]["days_left"] == 30 and out[1]["error"] == "Connection refused"


def test_nothing_registered():
    assert certbot_certificates.certificate_days(None, None) == []
    assert "certbot_certificate_days" in certbot_certificates.FilterModule().filters()
