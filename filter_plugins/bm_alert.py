# SPDX-License-Identifier: Apache-2.0
"""The first response to one Alertmanager alert: what to do, kept across runs.

- ``alert_response(state, event, action, now, ...)``: the decision for one alert
  that ansible-rulebook passed to playbooks/respond_alert.yml, and the state to
  keep for the next one. Pure: the role reads and writes the state file.

The lasting rules (the rulebook's throttle is in memory only):

- one triage per firing: an alert (fingerprint) already triaged since it started
  firing (same ``startsAt``) is not triaged again, whatever Alertmanager resends;
- one triage per host per ``host_interval`` seconds: another alert of the same
  host inside it is recorded in that triage's thread, not triaged again;
- a remediation only where ``remediations`` (the inventory) enables it for the
  alert name (and the ``service`` label, when the rule names one), only with a
  triage, and never twice for the same host within ``remediation_interval``
  seconds: a refused one is reported with its reason.

The reasons are catalogue msgs (ids ``ar.*`` in ``i18n/``, in ``msg``) for the mail
in bm_language; ``reason`` and ``remediation_refused`` are their English text.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

# bm_i18n (this directory) renders the reasons: Ansible loads filter plugins under
# names of its own, so the directory is put on the path for a plain import.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from bm_i18n import render  # noqa: E402

ACTIONS = ('firing', 'resolved')
# Alerts remembered at most this long after their last triage (a resolved
# notification Alertmanager never sent must not keep an entry for ever).
FORGET_SECONDS = 7 * 86400


def _thread_id(fingerprint: str, starts_at: str) -> str:
    """A stable mail thread root for one firing of one alert (RFC 5322 msg-id)."""
    stamp = re.sub(r'[^0-9]', '', starts_at or '')[:14] or '0'
    return f'<bmops-alert-{fingerprint}-{stamp}@bmops.invalid>'


def _event(event) -> dict:
    if not isinstance(event, dict):
        raise AnsibleFilterError('alert_response: the event is not a mapping')
    labels = event.get('labels')
    missing = [k for k in ('status', 'fingerprint') if not event.get(k)]
    if not isinstance(labels, dict):
        missing.append('labels')
    else:
        missing += [f'labels.{k}' for k in ('alertname', 'bm_host', 'severity')
                    if not labels.get(k)]
    if missing:
        raise AnsibleFilterError(
            'alert_response: the event is not an Alertmanager alert about a bmops host '
            f'(missing: {", ".join(missing)})')
    return event


def _says(out, key, msgid, **fields):
    """Set OUT[KEY] to the English text of a msg, and keep the msg in OUT['msg']."""
    msg = {'id': msgid, 'fields': fields}
    out['msg'][key] = msg
    out[key] = render(msg, 'en')


def _remediation(rules, labels) -> dict | None:
    for rule in rules or []:
        if rule.get('alertname') != labels.get('alertname'):
            continue
        if rule.get('service') and labels.get('service') not in (None, rule['service']):
            continue
        return rule
    return None


def alert_response(state, event, action, now, host_interval=600, remediations=None,
                   remediation_interval=3600):
    """Decide the response to EVENT (ACTION firing|resolved) at NOW (epoch seconds).

    Returns ``{triage, reason, thread, reply, remediate, remediation_refused,
    alert, state, msg}``: ``thread`` is the mail thread root, ``reply`` true when the
    mail belongs to an earlier one, ``remediate`` the service to start (or ''),
    ``state`` what to write back, ``msg`` the reason and the refusal as catalogue msgs.
    """
    if action not in ACTIONS:
        raise AnsibleFilterError(f'alert_response: action must be one of {ACTIONS}, got {action!r}')
    event = _event(event)
    now = float(now)
    labels = event['labels']
    host, fingerprint = labels['bm_host'], event['fingerprint']
    starts_at = event.get('startsAt') or ''
    new = copy.deepcopy(state) if isinstance(state, dict) else {}
    alerts = new.setdefault('alerts', {})
    hosts = new.setdefault('hosts', {})
    done = new.setdefault('remediations', {})
    for key in [k for k, v in alerts.items() if now - float(v.get('at', 0)) > FORGET_SECONDS]:
        del alerts[key]
    alert = {
        'alertname': labels['alertname'],
        'severity': labels['severity'],
        'host': host,
        'service': labels.get('service', ''),
        'status': event['status'],
        'starts_at': starts_at,
        'summary': (event.get('annotations') or {}).get('summary', ''),
        'fingerprint': fingerprint,
    }
    out = {'triage': False, 'reply': False, 'remediate': '', 'remediation_refused': '',
           'alert': alert, 'state': new, 'msg': {'remediation_refused': ''}}
    known = alerts.get(fingerprint)
    if action == 'resolved':
        out['thread'] = known['thread'] if known else _thread_id(fingerprint, starts_at)
        out['reply'] = known is not None
        _says(out, 'reason', 'ar.reason.resolved_known' if known else 'ar.reason.resolved_unknown')
        alerts.pop(fingerprint, None)
        return out
    if known and known.get('starts_at') == starts_at:
        out.update(thread=known['thread'], reply=True)
        _says(out, 'reason', 'ar.reason.answered', at=known.get('at_text', known.get('at')))
        return out
    last = hosts.get(host)
    if last and now - float(last['at']) < float(host_interval):
        alerts[fingerprint] = {'thread': last['thread'], 'starts_at': starts_at, 'at': now,
                               'host': host, 'alertname': labels['alertname']}
        out.update(thread=last['thread'], reply=True)
        _says(out, 'reason', 'ar.reason.host_recent', host=host,
              seconds=int(now - float(last['at'])), alertname=last.get('alertname'),
              interval=int(float(host_interval)))
        return out
    thread = _thread_id(fingerprint, starts_at)
    alerts[fingerprint] = {'thread': thread, 'starts_at': starts_at, 'at': now,
                           'host': host, 'alertname': labels['alertname']}
    hosts[host] = {'thread': thread, 'at': now, 'alertname': labels['alertname']}
    out.update(triage=True, thread=thread)
    _says(out, 'reason', 'ar.reason.new')
    rule = _remediation(remediations, labels)
    if rule:
        service = rule.get('service') or labels.get('service') or ''
        before = done.get(host)
        if not service:
            _says(out, 'remediation_refused', 'ar.refused.no_service',
                  alertname=labels['alertname'])
        elif before and now - float(before['at']) < float(remediation_interval):
            _says(out, 'remediation_refused', 'ar.refused.recent', service=before['service'],
                  host=host, seconds=int(now - float(before['at'])),
                  interval=int(float(remediation_interval)))
        else:
            out['remediate'] = service
            done[host] = {'at': now, 'service': service, 'alertname': labels['alertname']}
    return out


class FilterModule:
    """bmops alert response filters."""

    def filters(self):
        return {'bm_alert_response': alert_response}
