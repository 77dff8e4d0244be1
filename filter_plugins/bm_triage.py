# SPDX-License-Identifier: Apache-2.0
"""Incident triage (operations manual 3.2 / 3.3): verdicts from facts, pure functions.

``triage(facts, thresholds, now)`` turns what the incident_triage role gathered into
one verdict per symptom of the manual's section 3.3 (plus host resources)::

    {id, symptom, status: detected|suspected|clear|unknown, summary,
     evidence: [str], actions: [str], msg: {summary, evidence, actions}}

and ``postmortem(facts, verdicts, now)`` drafts the timeline of section 3.2 step 7.
Every sentence is built as data (``{id, fields}``, ids ``triage.*`` of the gettext
catalogues in ``i18n/``) and kept in ``msg``: the reports render it in bm_language
(filter ``bm_msg``); ``summary``, ``evidence``, ``actions`` and ``event`` are its
English text, for the JSON and for AWX.
The parsers (``meminfo``, ``access_log_stats``, ``log_tail``) shape raw text the role
read on the host. Nothing here talks to a server.
"""

from __future__ import annotations

import datetime
import re
import sys
from pathlib import Path

# bm_i18n (this directory) renders the sentences: Ansible loads filter plugins under
# names of its own, so the directory is put on the path for a plain import.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from bm_i18n import render  # noqa: E402

STATUS_ORDER = {'clear': 0, 'unknown': 1, 'suspected': 2, 'detected': 3}

DEFAULTS = dict(
    ready_latency_ms=1000,        # /health/ready slower than this: API slow
    long_query_seconds=30,        # an active query older than this: API slow
    slow_statement_ms=500,        # pg_stat_statements mean above this: suspected (cumulative)
    active_connections_max=50,    # active sessions above this: API slow suspected
    connections_used_max=90,      # percent of max_connections: DB connection errors
    restart_count_max=3,          # restarts of one container from this on: crash loop
    http_5xx_percent_max=5,       # share of 5xx in the access log tail: suspected
    http_5xx_min_requests=20,     # ignore a tail with fewer requests
    disk_used_max=90,             # percent, host resources
    memory_available_min=10,      # percent of MemTotal, host resources
    log_recent_minutes=15,        # log lines older than this are not evidence
)

SYMPTOMS = ('api_slow', 'container_not_starting', 'db_connection', 'host_resources')

# Lines of the backend / worker logs that mean "cannot reach PostgreSQL".
DB_ERROR_RE = re.compile(
    r'(connection refused|could not connect|could not translate host name|'
    r'connection to server .* failed|operationalerror|too many clients|'
    r'remaining connection slots|the database system is (starting up|shutting down)|'
    r'server closed the connection|terminating connection)', re.IGNORECASE)

# `docker compose logs --timestamps`: RFC 3339 time with nanoseconds, then the line.
TS_RE = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:?\d\d)?\s?(.*)$')

# nginx "combined": ... [time] "request" status bytes ...
ACCESS_RE = re.compile(r'\[(?P<time>[^\]]+)\]\s+"[^"]*"\s+(?P<status>\d{3})\s')


# ---------------------------------------------------------------------- parsers

def meminfo(text):
    """/proc/meminfo → {total_mb, available_mb, available_percent} (None when unreadable)."""
    values = {}
    for line in (text or '').splitlines():
        match = re.match(r'^(\w+):\s+(\d+)\s*kB', line)
        if match:
            values[match.group(1)] = int(match.group(2))
    total = values.get('MemTotal')
    avail = values.get('MemAvailable')
    if not total or avail is None:
        return dict(total_mb=None, available_mb=None, available_percent=None)
    return dict(total_mb=total // 1024, available_mb=avail // 1024,
                available_percent=round(100.0 * avail / total, 1))


def access_log_stats(lines):
    """Status classes of nginx access-log lines (combined format)."""
    total = errors_5xx = errors_4xx = 0
    first = last = None
    by_status = {}
    for line in lines or []:
        match = ACCESS_RE.search(line)
        if not match:
            continue
        total += 1
        status = match.group('status')
        by_status[status] = by_status.get(status, 0) + 1
        if status.startswith('5'):
            errors_5xx += 1
        elif status.startswith('4'):
            errors_4xx += 1
        first = first or match.group('time')
        last = match.group('time')
    return dict(requests=total, status_5xx=errors_5xx, status_4xx=errors_4xx,
                percent_5xx=round(100.0 * errors_5xx / total, 2) if total else None,
                by_status=dict(sorted(by_status.items())), first=first, last=last)


ANSI_RE = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')
# An application's own timestamp at the start of its log line (ISO 8601, with or
# without T, fraction, zone), as Docker's already precedes it.
APP_TS_RE = re.compile(r'^\[?\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?'
                       r'(?:Z|[+-]\d\d:?\d\d)?\]?\s+')
# A backend that refuses or resets connections is down, not slow.
REFUSED_RE = re.compile(r'refused|reset by peer|Errno 111|Errno 104|Remote end closed',
                        re.IGNORECASE)


def log_tail(text):
    """`docker compose logs --timestamps --no-log-prefix` → [{time, line}].

    Compose can put terminal control sequences (erase line) before each line even
    with --no-color; they are removed. The time is shown once: an application's own
    leading timestamp (most log formats have one) is dropped from ``line``, Docker's
    is kept in ``time``.
    """
    result = []
    for raw in (text or '').splitlines():
        raw = ANSI_RE.sub('', raw).strip()
        match = TS_RE.match(raw)
        if match:
            line = APP_TS_RE.sub('', match.group(3), count=1) or match.group(3)
            result.append(dict(time=match.group(1) + 'Z', line=line))
        elif raw.strip():
            result.append(dict(time=None, line=raw))
    return result


# ---------------------------------------------------------------------- helpers

def _section(facts, name):
    value = (facts or {}).get(name)
    return value if isinstance(value, dict) else {}


def _containers(facts):
    return _section(_section(facts, 'health'), 'containers').get('items') or []


def _service_lines(facts, service):
    return (_section(facts, 'logs').get(service) or [])


def _recent(lines, t):
    """Lines newer than log_recent_minutes before t['now'] (all of them without a now)."""
    now = _parse_time(t.get('now'))
    if now is None:
        return lines
    since = now - datetime.timedelta(minutes=t['log_recent_minutes'])
    return [e for e in lines if (_parse_time(e.get('time')) or now) >= since]


def m(msgid, **fields):
    """A sentence as data: a catalogue id (triage.*) and its fields."""
    return {'id': msgid, 'fields': fields}


def symptom(vid):
    return m(f'triage.symptom.{vid}')


def _en(text):
    return render(text, 'en')


def _verdict(vid, status, summary, evidence, actions, services=()):
    """A verdict: sentences as msgs (``msg``) and their English text."""
    return dict(id=vid, symptom=_en(symptom(vid)), status=status, summary=_en(summary),
                evidence=[_en(e) for e in evidence], actions=[_en(a) for a in actions],
                services=list(services),
                msg=dict(summary=summary, evidence=evidence, actions=actions))


def _ready_refused(facts):
    """/health/ready did not answer because the connection was refused or reset."""
    ready = _section(_section(_section(facts, 'health'), 'health'), 'ready')
    return bool(ready) and ready.get('status') is None and bool(
        REFUSED_RE.search(str(ready.get('error') or '')))


def _worst(*statuses):
    return max(statuses, key=lambda s: STATUS_ORDER[s])


def _thresholds(overrides):
    t = dict(DEFAULTS)
    t.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return t


def _fmt_seconds(seconds):
    seconds = float(seconds or 0)
    if seconds >= 120:
        return m('triage.unit.min', value=f'{seconds / 60:.1f}')
    return m('triage.unit.s', value=f'{seconds:.0f}')


def _cut(text, size=160):
    text = ' '.join(str(text or '').split())
    return text if len(text) <= size else text[:size - 1] + '…'


# ---------------------------------------------------------------------- verdicts

def verdict_db_connection(facts, t):
    health = _section(facts, 'health')
    ready = _section(_section(health, 'health'), 'ready')
    pg = _section(facts, 'pg')
    evidence, status = [], 'clear'
    db = [c for c in _containers(facts) if c.get('service') == 'db']
    if not db and _section(health, 'containers').get('error') is None and _containers(facts):
        evidence.append(m('triage.ev.no_db_container'))
        status = 'detected'
    for c in db:
        if not c.get('running'):
            evidence.append(m('triage.ev.db_not_running', name=c.get('name'),
                              state=c.get('state'), code=c.get('exit_code')))
            status = 'detected'
        elif c.get('health') == 'unhealthy':
            evidence.append(m('triage.ev.db_unhealthy', name=c.get('name')))
            status = 'detected'
    failed = (ready.get('json') or {}).get('failed') or []
    if 'db' in failed:
        detail = ((ready.get('json') or {}).get('checks') or {}).get('db')
        evidence.append(m('triage.ev.ready_db_failed_detail', detail=_cut(detail)) if detail
                        else m('triage.ev.ready_db_failed'))
        status = 'detected'
    if pg.get('error'):
        evidence.append(m('triage.ev.pg_error', error=_cut(pg['error'], 240)))
        status = 'detected'
    if pg.get('unavailable'):
        evidence.append(m('triage.ev.pg_unavailable', error=_cut(pg['unavailable'], 240)))
    conns = pg.get('connections') or {}
    used = conns.get('used_percent')
    if used is not None and used >= t['connections_used_max']:
        evidence.append(m('triage.ev.connections_used', total=conns.get('total'),
                          max=conns.get('max_connections'), used=used,
                          limit=t['connections_used_max']))
        status = 'detected'
    for service in ('backend', 'celery', 'celery-beat'):
        hits = [e for e in _recent(_service_lines(facts, service), t)
                if DB_ERROR_RE.search(e['line'])]
        if hits:
            evidence.append(m('triage.ev.db_errors_logged', service=service, count=len(hits),
                              line=_cut(hits[-1]['line'])))
            status = _worst(status, 'suspected')
    if status == 'clear' and not pg and not db:
        status = 'unknown'
        evidence.append(m('triage.ev.nothing_inspected'))
    if conns:
        evidence.append(m('triage.ev.conn_by_state', states=', '.join(
            f'{k} {v}' for k, v in sorted((conns.get('by_state') or {}).items()))))
    summary = m(f'triage.sum.db.{status}')
    actions = [m(f'triage.act.{a}') for a in ('db_ps', 'db_logs', 'db_start', 'db_active')
               ] if status != 'clear' else []
    return _verdict('db_connection', status, summary, evidence, actions,
                    ['db'] if status == 'detected' else [])


def _container_problem(c, t):
    state = c.get('state')
    restarts = int(c.get('restart_count') or 0)
    limit = t['restart_count_max']
    if state == 'restarting':
        return 'detected', m('triage.why.restarting', restarts=restarts)
    if restarts >= limit:
        if c.get('running') and c.get('health') in ('healthy', None):
            return 'suspected', m('triage.why.restarted_healthy', restarts=restarts, limit=limit)
        return 'detected', m('triage.why.restarted', restarts=restarts, limit=limit)
    if not c.get('running') and c.get('exit_code') not in (0, None):
        return 'detected', m('triage.why.exited', code=c.get('exit_code'), state=state)
    if not c.get('running'):
        # a stopped container keeps its last health status: ignore it
        return 'suspected', m('triage.why.stopped', state=state, code=c.get('exit_code'))
    if c.get('health') == 'unhealthy':
        return 'detected', m('triage.why.unhealthy')
    return 'clear', None


def verdict_container_not_starting(facts, t, services):
    health = _section(facts, 'health')
    section = _section(health, 'containers')
    items = _containers(facts)
    evidence, actions, status = [], [], 'clear'
    if section.get('error') or not section:
        return _verdict('container_not_starting', 'unknown', m('triage.sum.containers.unknown'),
                        [section.get('error') or m('triage.ev.no_container_facts')], [])
    present = {c.get('service') for c in items}
    for service in services:
        if service not in present:
            evidence.append(m('triage.ev.no_container', service=service))
            status = _worst(status, 'suspected')
            actions.append(f'docker compose up -d {service}')
    failing = [s for s in services if s not in present]
    for c in items:
        found, why = _container_problem(c, t)
        if found == 'clear' and c.get('service') == 'backend' and c.get('running') \
                and _ready_refused(facts):
            found, why = 'detected', m('triage.why.refuses')
        if found == 'clear':
            continue
        status = _worst(status, found)
        failing.append(c.get('service'))
        evidence.append(m('triage.ev.container_problem', service=c.get('service'),
                          name=c.get('name'), why=why))
        tail = _service_lines(facts, c.get('service'))
        if tail:
            evidence.append(m('triage.ev.last_log_line', service=c.get('service'),
                              line=_cut(tail[-1]['line'], 240)))
        service = c.get('service')
        actions += [f'docker compose logs --tail=100 {service}',
                    f'playbooks/restart_services.yml -e restart_service={service}']
    if status == 'detected':
        actions.append(m('triage.act.full_restart'))
    failing = list(dict.fromkeys(failing))
    summary = m(f'triage.sum.containers.{status}', count=len(items))
    if failing:
        summary = m('triage.sum.with_services', summary=summary, services=', '.join(failing))
    unique = list({repr(a): a for a in actions}.values())
    return _verdict('container_not_starting', status, summary, evidence, unique, failing)


def verdict_api_slow(facts, t):
    health = _section(facts, 'health')
    ready = _section(_section(health, 'health'), 'ready')
    pg = _section(facts, 'pg')
    redis = _section(health, 'redis')
    nginx = _section(facts, 'nginx')
    evidence, status = [], 'clear'
    latency = ready.get('latency_ms')
    if _ready_refused(facts):
        evidence.append(m('triage.ev.ready_refused', error=_cut(ready.get('error')),
                          symptom=symptom('container_not_starting')))
    elif ready and ready.get('status') is None:
        evidence.append(m('triage.ev.ready_no_answer', error=_cut(ready.get('error'))))
        status = 'detected'
    elif latency is not None:
        if latency > t['ready_latency_ms']:
            evidence.append(m('triage.ev.ready_slow', ms=f'{latency:.0f}',
                              limit=t['ready_latency_ms']))
            status = 'detected'
        else:
            evidence.append(m('triage.ev.ready_ok', status=ready.get('status'),
                              ms=f'{latency:.0f}'))
    for q in pg.get('long_running_queries') or []:
        if float(q.get('seconds') or 0) < t['long_query_seconds']:
            continue
        waiting = (m('triage.ev.waiting', event=q['wait_event_type'])
                   if q.get('wait_event_type') else '')
        evidence.append(m('triage.ev.long_query', pid=q.get('pid'), state=q.get('state'),
                          duration=_fmt_seconds(q.get('seconds')), waiting=waiting,
                          query=_cut(q.get('query'))))
        status = 'detected'
    for error in pg.get('errors') or []:
        if re.search(r'lock timeout|canceling statement due to (lock|statement) timeout', error,
                     re.IGNORECASE):
            evidence.append(m('triage.ev.stats_timeout', error=_cut(error)))
            status = 'detected'
    active = ((pg.get('connections') or {}).get('by_state') or {}).get('active')
    if active is not None and active > t['active_connections_max']:
        evidence.append(m('triage.ev.active_sessions', active=active,
                          limit=t['active_connections_max']))
        status = 'detected'
    statements = (pg.get('pg_stat_statements') or {}).get('statements') or []
    slow = [s for s in statements if float(s.get('mean_ms') or 0) > t['slow_statement_ms']]
    for s in slow[:3]:
        evidence.append(m('triage.ev.slow_statement', ms=f"{float(s['mean_ms']):.0f}",
                          calls=s.get('calls'), query=_cut(s.get('query'))))
        status = _worst(status, 'suspected')
    if redis and not redis.get('ok'):
        evidence.append(m('triage.ev.redis_ping', error=_cut(redis.get('error'))))
        status = 'detected'
    access = nginx.get('access') or {}
    pct = access.get('percent_5xx')
    if (pct is not None and access.get('requests', 0) >= t['http_5xx_min_requests']
            and pct > t['http_5xx_percent_max']):
        evidence.append(m('triage.ev.nginx_5xx', count=access['status_5xx'],
                          requests=access['requests'], pct=pct,
                          limit=t['http_5xx_percent_max']))
        status = _worst(status, 'suspected')
    if not ready and not pg:
        status = _worst(status, 'unknown')
    summary = m(f'triage.sum.api.{status}')
    actions = [m(f'triage.act.{a}') for a in ('api_locks', 'api_statements', 'api_redis')
               ] if status in ('detected', 'suspected') else []
    return _verdict('api_slow', status, summary, evidence, actions,
                    ['redis'] if redis and not redis.get('ok') else [])


def verdict_host_resources(facts, t):
    disks = (_section(_section(facts, 'health'), 'storage').get('filesystems') or [])
    memory = _section(facts, 'memory')
    evidence, status = [], 'clear'
    for fs in disks:
        used = fs.get('used_percent')
        if used is None:
            continue
        if used >= t['disk_used_max']:
            evidence.append(m('triage.ev.disk_limit', path=fs.get('path'), used=used,
                              limit=t['disk_used_max']))
            status = 'detected'
        else:
            evidence.append(m('triage.ev.disk', path=fs.get('path'), used=used))
    avail = memory.get('available_percent')
    if avail is not None:
        fields = dict(avail_mb=memory.get('available_mb'), total_mb=memory.get('total_mb'),
                      pct=avail)
        if avail < t['memory_available_min']:
            evidence.append(m('triage.ev.memory_limit', limit=t['memory_available_min'],
                              **fields))
            status = 'detected'
        else:
            evidence.append(m('triage.ev.memory', **fields))
    if not disks and avail is None:
        status = 'unknown'
    summary = m(f'triage.sum.host.{status}')
    actions = ['df -h; du -xsh /var/lib/docker/* /backup/db; free -m'] \
        if status == 'detected' else []
    return _verdict('host_resources', status, summary, evidence, actions)


def triage(facts, thresholds=None, services=None, now=None):
    """All verdicts in the manual's order, and an overall status.

    NOW (ISO time of the run) limits log evidence to the last log_recent_minutes.
    """
    t = _thresholds(thresholds)
    t['now'] = now
    services = services or ['backend', 'celery', 'celery-beat', 'db', 'redis']
    verdicts = [
        verdict_api_slow(facts, t),
        verdict_container_not_starting(facts, t, services),
        verdict_db_connection(facts, t),
        verdict_host_resources(facts, t),
    ]
    detected = [v['symptom'] for v in verdicts if v['status'] == 'detected']
    suspected = [v['symptom'] for v in verdicts if v['status'] == 'suspected']
    ready = _section(_section(_section(facts, 'health'), 'health'), 'ready')
    failing = list(dict.fromkeys(
        s for v in verdicts if v['status'] in ('detected', 'suspected') for s in v['services']))
    return dict(
        status='incident' if detected else ('attention' if suspected else 'ok'),
        ready_status=ready.get('status'),
        detected=detected,
        suspected=suspected,
        failing_services=failing,
        verdicts=verdicts,
        thresholds=t,
    )


# ---------------------------------------------------------------------- postmortem

def _parse_time(value):
    if not value:
        return None
    text = str(value).replace('Z', '+00:00')
    text = re.sub(r'(\.\d{6})\d+', r'\1', text)
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    if parsed.year < 2000:  # Docker's zero time for never-started containers
        return None
    return parsed.astimezone(datetime.UTC)


def _iso(when):
    return when.strftime('%Y-%m-%dT%H:%M:%SZ')


def postmortem(facts, result, now):
    """A draft of the manual's postmortem (3.2 step 7): timeline from facts, blanks for people."""
    now_dt = _parse_time(now) or datetime.datetime.now(datetime.UTC)
    events = []
    for c in _containers(facts):
        started = _parse_time(c.get('started_at'))
        if started:
            events.append((started, m('triage.pm.container_started', service=c.get('service'),
                                      restarts=c.get('restart_count', 0),
                                      state=c.get('state'))))
    for service, lines in sorted((_section(facts, 'logs')).items()):
        for entry in lines or []:
            if re.search(r'\b(ERROR|CRITICAL|FATAL|PANIC)\b', entry['line']):
                when = _parse_time(entry.get('time'))
                if when:
                    events.append((when, m('triage.pm.first_error', service=service,
                                           line=_cut(entry['line'], 200))))
                break
    pg = _section(facts, 'pg')
    started = _parse_time((pg.get('server') or {}).get('started_at'))
    if started:
        events.append((started, m('triage.pm.pg_started')))
    for q in pg.get('long_running_queries') or []:
        seconds = float(q.get('seconds') or 0)
        if seconds >= result['thresholds']['long_query_seconds']:
            events.append((now_dt - datetime.timedelta(seconds=seconds),
                           m('triage.pm.query_started', pid=q.get('pid'), state=q.get('state'),
                             query=_cut(q.get('query'), 120))))
    access = (_section(facts, 'nginx').get('access') or {})
    if access.get('status_5xx'):
        events.append((now_dt, m('triage.pm.nginx_5xx', first=access.get('first'),
                                 count=access['status_5xx'], requests=access['requests'])))
    detected = [v['id'] for v in result['verdicts'] if v['status'] == 'detected']
    events.append((now_dt, m('triage.pm.triage_ran', what=m(
        'triage.pm.detected', symptoms=[symptom(v) for v in detected])
        if detected else m('triage.pm.none'))))
    events.sort(key=lambda e: e[0])
    return dict(
        drafted_at=_iso(now_dt),
        status=result['status'],
        detected=result['detected'],
        suspected=result['suspected'],
        timeline=[dict(time=_iso(when), event=_en(text), msg=text) for when, text in events],
    )


class FilterModule:
    """bmops incident triage filters."""

    def filters(self):
        return {
            'bm_triage': triage,
            'bm_triage_postmortem': postmortem,
            'bm_triage_meminfo': meminfo,
            'bm_triage_access_log': access_log_stats,
            'bm_triage_log_tail': log_tail,
        }
