# SPDX-License-Identifier: Apache-2.0
"""Shape certificate facts for the daily and weekly checks (pure functions).

``certbot_certificate_days(files, endpoints, now=None)`` takes the registered
loop results of community.crypto.x509_certificate_info (over file paths) and
community.crypto.get_certificate (over ``{name, host, port, server_name}``)
and returns one entry per certificate::

    {name, path_or_endpoint, path, endpoint, not_after, days_left, seconds_left,
     issuer, serial, error}

``days_left`` is whole days until notAfter, rounded down (negative once
expired), for display; ``seconds_left`` is exact, and what the checks compare
(30.5 days left is not yet at the 30-day warning). Both are None with ``error``
set when the certificate could not be read. The bm_checks filters
(bm_evaluate_daily / bm_evaluate_weekly / bm_certificate_checks) read ``name``,
``seconds_left`` (``days_left`` when absent) and ``error``.
"""

from __future__ import annotations

import datetime


def _now(now):
    if now is None:
        return datetime.datetime.now(datetime.UTC)
    if isinstance(now, str):
        now = datetime.datetime.fromisoformat(now.replace('Z', '+00:00'))
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.UTC)
    return now


def _results(registered):
    if isinstance(registered, dict):
        return registered.get('results') or []
    return registered or []


def _issuer(res):
    issuer = res.get('issuer') or {}
    if isinstance(issuer, dict):
        return issuer.get('commonName') or issuer.get('organizationName')
    return None


def _entry(name, path, endpoint, res, now):
    entry = dict(name=name, path_or_endpoint=path or endpoint, path=path, endpoint=endpoint,
                 not_after=None, days_left=None, seconds_left=None, issuer=None, serial=None,
                 error=None)
    not_after = res.get('not_after')
    if res.get('failed') or res.get('skipped') or not not_after:
        entry['error'] = str(res.get('msg') or 'certificate could not be read')
        return entry
    try:
        expires = datetime.datetime.strptime(not_after, '%Y%m%d%H%M%SZ').replace(
            tzinfo=datetime.UTC)
    except ValueError:
        entry['error'] = f'unreadable notAfter {not_after!r}'
        return entry
    entry['not_after'] = expires.isoformat()
    seconds = (expires - now).total_seconds()
    entry['days_left'] = int(seconds // 86400)  # whole days, for display
    entry['seconds_left'] = int(seconds)  # what the checks compare (30.5 days is not 30)
    entry['issuer'] = _issuer(res)
    serial = res.get('serial_number')
    entry['serial'] = None if serial is None else format(int(serial), 'x')
    return entry


def certificate_days(files=None, endpoints=None, now=None):
    """Registered x509_certificate_info / get_certificate loops → certificate entries."""
    now = _now(now)
    out = []
    for res in _results(files):
        path = res.get('item') if isinstance(res.get('item'), str) else res.get('path')
        out.append(_entry(path, path, None, res, now))
    for res in _results(endpoints):
        item = res.get('item') if isinstance(res.get('item'), dict) else {}
        endpoint = '{}:{}'.format(item.get('host', '?'), item.get('port', 443))
        if item.get('server_name'):
            endpoint = '{} ({})'.format(endpoint, item['server_name'])
        out.append(_entry(item.get('name') or endpoint, None, endpoint, res, now))
    return out


class FilterModule:
    """certbot role filters."""

    def filters(self):
        return {'certbot_certificate_days': certificate_days}
