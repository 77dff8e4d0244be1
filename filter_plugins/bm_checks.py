# SPDX-License-Identifier: Apache-2.0
"""Threshold evaluation for the daily and weekly checks (pure functions).

One file on purpose: the daily and weekly evaluations, the certificate and backup
checks, the summary and the Prometheus text all build on make_check and its message
helpers, and a filter plugin file cannot import another.

A check is a dict::

    {metric, item, label, value, limit, op, unit, status: ok|warn|breach, message, notify}

``op`` is the condition that must hold for the check to be ok (``value op limit``).
``message`` names the metric, the value and the limit, in English; ``msg`` is the same
sentence as data, ``{id, fields}`` of the gettext catalogues ``i18n/<lang>/LC_MESSAGES``
(a field that is itself ``{id, fields}`` is translated too), so a report renders it in
any language (filter ``bm_check_text``). ``message`` is the English catalogue's text of
``msg``: no sentence is written twice. ``notify`` asks for a mail
(always for a breach; for a certificate from the warning window on, as the manual's
section 6.2 wants a mail 30 days before expiry and an urgent one at 7 days).
"""

from __future__ import annotations

import gettext
import re
from pathlib import Path

STATUS_ORDER = {'ok': 0, 'warn': 1, 'breach': 2}

# The manual's numbers (sections 1.1, 6.2) and the weekly review's.
DAILY_DEFAULTS = dict(
    ready_status=200,
    success_rate_min=95,          # percent, ok when >=
    success_rate_no_jobs='warn',  # status when no job finished in the window (rate undefined)
    failed_jobs_max=0,
    # The manual: "0 件が理想" (0 is the ideal), a P3 in its own table: a warning.
    # Set to breach to fail the run on any failed job / ERROR line.
    failed_jobs_status='warn',
    storage_used_max=80,          # percent, ok when <
    error_logs_max=0,
    error_logs_status='warn',     # as failed_jobs_status: the manual's "ideal"
    redis_ping_status='breach',
    containers_status='breach',   # a project container not running, or unhealthy
    cert_warn_days=30,
    cert_urgent_days=7,
    backup_age_max_hours=26,      # newest verified bmops-backup, ok when <=
    backup_run_status='breach',   # the last scheduled (cron) backup run failed
    backup_unmeasured_status='warn',  # bmops-backup not installed, or no run yet
)

WEEKLY_DEFAULTS = dict(
    dead_percent_max=20,            # per table, warn above
    dead_min_tuples=1000,           # ignore small tables
    cache_hit_min=99,               # percent, warn below
    cache_hit_min_blocks=10000,     # ignore a cold cache
    xid_age_warn=500000000,
    xid_age_breach=1500000000,      # 70 % of the 2^31 horizon: act now
    connections_used_max=80,        # percent of max_connections, warn above
    long_query_seconds=300,         # warn when a query runs longer
    unused_indexes_max=0,           # warn: review candidates
    missing_indexes_max=0,          # warn: review candidates
    security_updates_max=0,         # warn: pending security updates
    security_updates_status='warn',
    cert_warn_days=30,
    cert_urgent_days=7,
)

_OPS = {
    '>=': (lambda v, lim: v >= lim, 'ge'),
    '>': (lambda v, lim: v > lim, 'gt'),
    '<': (lambda v, lim: v < lim, 'lt'),
    '<=': (lambda v, lim: v <= lim, 'le'),
    '==': (lambda v, lim: v == lim, 'eq'),
}

_EN = Path(__file__).resolve().parent.parent / 'i18n' / 'en' / 'LC_MESSAGES' / 'bmops.mo'
_CATALOGUE = []


def msg(msgid, **fields):
    """A sentence as data: a catalogue id and its fields (str, number or another msg)."""
    return {'id': msgid, 'fields': fields}


def english(m):
    """The English catalogue's text of M (a msg, or a plain value)."""
    if not isinstance(m, dict) or 'id' not in m:
        return '' if m is None else str(m)
    if not _CATALOGUE:
        with open(_EN, 'rb') as fh:
            _CATALOGUE.append(gettext.GNUTranslations(fh))
    text = _CATALOGUE[0].gettext(m['id'])
    if text == m['id']:
        raise KeyError(f"message {m['id']!r} is missing from {_EN.with_suffix('.po')}")
    return text.format(**{k: english(v) for k, v in (m.get('fields') or {}).items()})


def _set(check, m):
    """Give CHECK the message M (msg and its English text)."""
    check['msg'] = m
    check['message'] = english(m)
    return check


def more(check, detail):
    """Append DETAIL (text or msg) to CHECK's message in parentheses."""
    return _set(check, msg('check.more', text=check['msg'], more=detail))


def _fmt(value, limit=None):
    """Display a value: floats with 1 or 2 decimals, more when fewer would show a value
    that differs from ``limit`` as equal to it (94.995 against 95). Display only: every
    comparison uses the unrounded value."""
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, float):
        text = f'{value:.1f}' if round(value, 1) == value else f'{value:.2f}'
        digits = 2
        while (isinstance(limit, (int, float)) and value != limit and digits < 9
               and float(text) == float(limit)):
            digits += 1
            text = f'{value:.{digits}f}'
        return text
    return str(value)


def _with_unit(value, unit, limit=None):
    """The value with its unit, as a msg (``unit.h``: "26 h", "26 時間")."""
    if not unit:
        return _fmt(value, limit)
    return msg('unit.' + ('percent' if unit == '%' else unit), n=_fmt(value, limit))


def _name(label, item=None):
    name = msg('label.' + label) if isinstance(label, str) else label
    return name if item is None else msg('check.name', label=name, item=item)


def _criterion(op, limit, unit):
    return msg('crit.' + _OPS[op][1], limit=_with_unit(limit, unit))


def make_check(metric, label, value, limit, op, unit='', item=None, fail_status='breach',
               message=None, status=None):
    """Compare value op limit; build the check with a message naming metric, value, limit.

    LABEL is the catalogue key of the name (``label.<LABEL>``) or a msg; MESSAGE a msg."""
    if op not in _OPS:
        raise ValueError(f'unknown op {op!r}')
    test, opname = _OPS[op]
    if status is None:
        status = fail_status if value is None else 'ok' if test(value, limit) else fail_status
    if message is None:
        fields = dict(name=_name(label, item), criterion=_criterion(op, limit, unit),
                      limit=_with_unit(limit, unit),
                      value='' if value is None else _with_unit(value, unit, limit))
        message = msg('check.unmeasured' if value is None else 'check.ok' if status == 'ok'
                      else 'check.fail.' + opname, **fields)
    check = dict(metric=metric, item=item, label=english(_name(label)), value=value,
                 limit=limit, op=op, unit=unit, status=status, notify=status == 'breach',
                 shown=None if value is None else _fmt(value, limit))
    return _set(check, message)


def _thresholds(defaults, overrides):
    merged = dict(defaults)
    merged.update(dict((k, v) for k, v in (overrides or {}).items() if v is not None))
    return merged


def _section(facts, name):
    """A section of the module result, or an error dict when missing."""
    section = (facts or {}).get(name)
    if section is None:
        return {'error': msg('reason.not_gathered', section=name)}
    return section


def _unmeasured(metric, label, limit, op, unit, reason, item=None, status='breach'):
    return make_check(metric, label, None, limit, op, unit, item=item, fail_status=status,
                      message=msg('check.unmeasured_why', name=_name(label, item),
                                  criterion=_criterion(op, limit, unit), reason=reason))


# ------------------------------------------------------------------ certificates
def certificate_checks(certificates, warn_days=30, urgent_days=7):
    """certificates: [{name or path, days_left}] → checks (warn ≤ warn_days, breach ≤ urgent)."""
    checks = []
    for cert in certificates or []:
        item = cert.get('name') or cert.get('path') or 'certificate'
        days = cert.get('days_left')
        if cert.get('seconds_left') is not None:  # exact: 30.5 days is above 30
            days = cert['seconds_left'] / 86400.0
        if days is None:
            checks.append(_unmeasured('certificate_days_left', 'certificate', warn_days, '>',
                                      'days', cert.get('error') or msg('reason.no_expiry'),
                                      item=item))
            continue
        status = 'breach' if days <= urgent_days else 'warn' if days <= warn_days else 'ok'
        limit = urgent_days if status == 'breach' else warn_days
        shown = _fmt(float(days), limit) if days != int(days) else str(int(days))
        message = msg('check.cert.' + status, item=item, days=shown,
                      limit=warn_days if status == 'ok' else limit)
        check = make_check('certificate_days_left', 'certificate', days, warn_days, '>',
                           'days', item=item, status=status, message=message)
        check['notify'] = status != 'ok'
        check['not_after'] = cert.get('not_after')
        checks.append(check)
    return checks


# ------------------------------------------------------------------ daily
def backup_checks(backup, t):
    """``bmops-backup status`` → the newest verified backup's age, the last scheduled run.

    No backup and no scheduled run yet (a new host) warns; no verified backup after a
    scheduled run, a backup older than the limit, or a failed scheduled run breaches.
    """
    if backup is None:
        return []
    age_label, run_label = 'backup_age', 'backup_run'
    limit = t['backup_age_max_hours']
    if backup.get('error'):
        return [_unmeasured('backup_newest_age_hours', age_label, limit, '<=', 'h',
                            backup['error'], status=t['backup_unmeasured_status']),
                _unmeasured('backup_last_scheduled_run', run_label, 1, '==', '',
                            backup['error'], status=t['backup_unmeasured_status'])]
    newest, run = backup.get('newest_verified'), backup.get('last_scheduled_run')
    checks = []
    if newest:
        check = make_check('backup_newest_age_hours', age_label,
                           round(newest['age_seconds'] / 3600.0, 2), limit, '<=', 'h')
        checks.append(more(check, '{}, {}'.format(newest.get('id'), newest.get('created_utc'))))
    else:
        status = 'breach' if run else t['backup_unmeasured_status']
        checks.append(make_check(
            'backup_newest_age_hours', age_label, None, limit, '<=', 'h', status=status,
            message=msg('check.backup.none' if run else 'check.backup.none_yet', limit=limit)))
    if run is None:
        checks.append(make_check(
            'backup_last_scheduled_run', run_label, None, 1, '==',
            status=t['backup_unmeasured_status'],
            message=msg('check.backup.no_run')))
    else:
        ok = bool(run.get('ok'))
        when = run.get('finished_utc') or msg('reason.time_unknown')
        checks.append(make_check(
            'backup_last_scheduled_run', run_label, 1 if ok else 0, 1, '==',
            fail_status=t['backup_run_status'],
            message=msg('check.backup.run_ok', when=when) if ok else
            msg('check.backup.run_failed', when=when,
                reason=run.get('error') or msg('reason.no_error'))))
    return checks


def evaluate_daily(facts, thresholds=None, certificates=None, backup=None):
    """bm_health_info result (+ certificates, + bmops-backup status) → list of checks
    (manual section 1.1)."""
    t = _thresholds(DAILY_DEFAULTS, thresholds)
    checks = []

    health = _section(facts, 'health')
    ready = health.get('ready') or {}
    if ready.get('status') is None:
        checks.append(_unmeasured('health_ready_status', 'ready_endpoint', t['ready_status'],
                                  '==', '', ready.get('error') or health.get('error')
                                  or msg('reason.no_answer')))
    else:
        check = make_check('health_ready_status', 'ready_status', ready['status'],
                           t['ready_status'], '==')
        if check['status'] != 'ok' and isinstance(ready.get('json'), dict) \
                and ready['json'].get('failed'):
            check = more(check, msg('detail.failed', names=', '.join(
                map(str, ready['json']['failed']))))
        checks.append(check)

    jobs = _section(facts, 'jobs')
    if jobs.get('error'):
        checks.append(_unmeasured('job_success_rate', 'job_success_rate', t['success_rate_min'],
                                  '>=', '%', jobs['error']))
        checks.append(_unmeasured('failed_jobs', 'failed_jobs', t['failed_jobs_max'], '<=', '',
                                  msg('reason.see_success_rate'),
                                  status=t['failed_jobs_status']))
    else:
        window = jobs.get('window_hours', 24)
        if not jobs.get('total'):
            checks.append(make_check(
                'job_success_rate', 'job_success_rate', None, t['success_rate_min'], '>=', '%',
                status=t['success_rate_no_jobs'],
                message=msg('check.no_jobs', hours=window,
                            criterion=_criterion('>=', t['success_rate_min'], '%'))))
        else:
            checks.append(make_check('job_success_rate', 'job_success_rate',
                                     jobs.get('success_rate'), t['success_rate_min'], '>=', '%'))
        failed = make_check('failed_jobs', 'failed_jobs', int(jobs.get('failed') or 0),
                            t['failed_jobs_max'], '<=', fail_status=t['failed_jobs_status'])
        names = [str(j.get('name') or j.get('id')) for j in jobs.get('failed_jobs') or []]
        if failed['status'] != 'ok' and names:
            failed = more(failed, ', '.join(names[:5]))
        checks.append(failed)

    storage = _section(facts, 'storage')
    measured = 0
    for target in storage.get('targets') or []:
        measured += 1
        checks.append(make_check('storage_used_percent', 'storage', target.get('used_percent'),
                                 t['storage_used_max'], '<', '%',
                                 item=target.get('name') or target.get('path')))
    for fs in storage.get('filesystems') or []:
        measured += 1
        checks.append(make_check('filesystem_used_percent', 'filesystem',
                                 fs.get('used_percent'), t['storage_used_max'], '<', '%',
                                 item=fs.get('path')))
    if storage.get('error') and not measured:
        checks.append(_unmeasured('storage_used_percent', 'storage', t['storage_used_max'], '<',
                                  '%', storage['error']))
    elif storage.get('error'):
        checks.append(_unmeasured('storage_used_percent', 'storage', t['storage_used_max'], '<',
                                  '%', storage['error'], item='targets'))

    logs = _section(facts, 'logs')
    services = logs.get('services') or {}
    log_label = msg('label.error_logs_of', hours=logs.get('window_hours', 24))
    for service in sorted(services):
        entry = services[service]
        if entry.get('read_error') and not entry.get('lines'):
            checks.append(_unmeasured('error_log_lines', log_label, t['error_logs_max'], '<=',
                                      '', entry['read_error'], item=service,
                                      status=t['error_logs_status']))
            continue
        checks.append(make_check('error_log_lines', log_label, int(entry.get('error') or 0),
                                 t['error_logs_max'], '<=', item=service,
                                 fail_status=t['error_logs_status']))
    if not services and logs.get('error'):
        checks.append(_unmeasured('error_log_lines', 'error_logs', t['error_logs_max'],
                                  '<=', '', logs['error'], status=t['error_logs_status']))

    redis = (facts or {}).get('redis')
    if redis is not None:
        ok = bool(redis.get('ok'))
        checks.append(make_check(
            'redis_ping', 'redis_ping', 1 if ok else 0, 1, '==',
            fail_status=t['redis_ping_status'],
            message=msg('check.redis.ok', response=redis.get('response')) if ok else
            msg('check.redis.failed', reason=redis.get('error') or msg('reason.no_answer'))))

    containers = (facts or {}).get('containers')
    if containers is not None:
        if containers.get('error'):
            checks.append(_unmeasured('container_up', 'containers', 1, '==', '',
                                      containers['error'], status=t['containers_status']))
        for item in containers.get('items') or []:
            up = bool(item.get('running')) and item.get('health') in (None, 'healthy', 'starting')
            checks.append(make_check(
                'container_up', 'container', 1 if up else 0, 1, '==',
                item=item.get('service') or item.get('name'), fail_status=t['containers_status'],
                message=msg('check.container.' + ('up' if up else 'down'),
                            name=item.get('name'), service=item.get('service'),
                            state=item.get('state'), restarts=item.get('restart_count', 0),
                            health=msg('detail.health', health=item['health'])
                            if item.get('health') else '')))

    checks.extend(backup_checks(backup, t))
    checks.extend(certificate_checks(certificates, t['cert_warn_days'], t['cert_urgent_days']))
    return checks


# ------------------------------------------------------------------ weekly
def apt_upgrades(stdout):
    """Parse `apt-get -s dist-upgrade` output into pending updates.

    "Inst libssl3 [3.0.11-1] (3.0.13-1~deb12u1 Debian-Security:12/stable-security [amd64])"
    """
    packages = []
    for line in (stdout or '').splitlines():
        match = re.match(r'^Inst (\S+)(?: \[([^\]]*)\])? \((\S+) (.*?)(?: \[[^\]]*\])?\)', line)
        if not match:
            continue
        origin = match.group(4)
        packages.append(dict(name=match.group(1), current=match.group(2),
                             candidate=match.group(3), origin=origin,
                             security='security' in origin.lower()))
    security = [p for p in packages if p['security']]
    return dict(total=len(packages), security=len(security), packages=packages,
                security_packages=sorted(p['name'] for p in security))


def _pg_checks(pg, t):
    """Checks of a bm_pg_stats_info result that has statistics."""
    checks = []
    for table in pg.get('tables') or []:
        tuples = (table.get('live_tuples') or 0) + (table.get('dead_tuples') or 0)
        if tuples < t['dead_min_tuples'] or table.get('dead_percent') is None:
            continue
        checks.append(make_check('dead_tuple_percent', 'dead_tuples_of',
                                 float(table['dead_percent']), t['dead_percent_max'], '<=', '%',
                                 item='{}.{}'.format(table.get('schema'), table.get('table')),
                                 fail_status='warn'))

    cache = pg.get('cache_hit') or {}
    blocks = (cache.get('blks_hit') or 0) + (cache.get('blks_read') or 0)
    if cache.get('ratio_percent') is not None and blocks >= t['cache_hit_min_blocks']:
        checks.append(make_check('cache_hit_percent', 'cache_hit',
                                 float(cache['ratio_percent']), t['cache_hit_min'], '>=', '%',
                                 fail_status='warn'))

    for db in pg.get('databases') or []:
        age = db.get('xid_age')
        if age is None:
            continue
        if age >= t['xid_age_breach']:
            checks.append(make_check('xid_age', 'xid_age_of', age,
                                     t['xid_age_breach'], '<', item=db.get('name')))
        else:
            checks.append(make_check('xid_age', 'xid_age_of', age, t['xid_age_warn'],
                                     '<', item=db.get('name'), fail_status='warn'))

    conns = pg.get('connections') or {}
    if conns.get('used_percent') is not None:
        checks.append(make_check('connections_used_percent', 'connections',
                                 float(conns['used_percent']), t['connections_used_max'], '<=',
                                 '%', fail_status='warn'))

    queries = pg.get('long_running_queries') or []
    longest = max([float(q.get('seconds') or 0) for q in queries] or [0.0])
    checks.append(make_check('longest_query_seconds', 'longest_query',
                             round(longest, 1), t['long_query_seconds'], '<=', 's',
                             fail_status='warn'))

    if 'unused_indexes' in pg:
        unused = pg.get('unused_indexes') or []
        check = make_check('unused_indexes', 'unused_indexes', len(unused),
                           t['unused_indexes_max'], '<=', fail_status='warn')
        if unused:
            check = more(check, ', '.join(i.get('index', '?') for i in unused[:5]))
        checks.append(check)
    if 'missing_index_candidates' in pg:
        missing = pg.get('missing_index_candidates') or []
        check = make_check('missing_index_candidates', 'missing_indexes', len(missing),
                           t['missing_indexes_max'], '<=', fail_status='warn')
        if missing:
            check = more(check, ', '.join(
                '{}.{}'.format(m.get('schema'), m.get('table')) for m in missing[:5]))
        checks.append(check)

    pgss = pg.get('pg_stat_statements')
    if pgss is not None:
        available = bool(pgss.get('available'))
        checks.append(make_check(
            'pg_stat_statements_available', 'pgss', 1 if available else 0, 1, '==',
            fail_status='warn',
            message=msg('check.pgss.ok') if available else
            msg('check.pgss.missing', reason=pgss.get('reason'))))
    return checks


def evaluate_weekly(pg_stats, thresholds=None, updates=None, certificates=None):
    """bm_pg_stats_info result (+ apt_upgrades result, certificates) → list of checks."""
    t = _thresholds(WEEKLY_DEFAULTS, thresholds)
    pg = pg_stats or {}
    checks = []
    if pg.get('failed') or (pg.get('msg') and not pg.get('databases')):
        # No statistics at all: one breach that says why, no made-up values.
        checks.append(make_check(
            'pg_stats', 'pg_stats', None, 1, '==', status='breach',
            message=msg('check.pg_stats.unreadable',
                        reason=pg.get('msg') or msg('reason.pg_stats_nothing'))))
    else:
        checks.extend(_pg_checks(pg, t))

    if updates is not None:
        if updates.get('error'):
            checks.append(_unmeasured('security_updates', 'security_updates',
                                      t['security_updates_max'], '<=', '', updates['error'],
                                      status='warn'))
        else:
            check = make_check('security_updates', 'security_updates',
                               int(updates.get('security') or 0), t['security_updates_max'],
                               '<=', fail_status=t['security_updates_status'])
            if updates.get('security_packages') and check['status'] != 'ok':
                check = more(check, ', '.join(updates['security_packages'][:10]))
            checks.append(check)

    checks.extend(certificate_checks(certificates, t['cert_warn_days'], t['cert_urgent_days']))
    return checks


# ------------------------------------------------------------------ summary / output
def notify_once(checks, previous=None, metrics=('certificate_days_left',)):
    """Alerts of METRICS mailed once per crossing (manual 6.2: a mail at 30 days, an
    urgent one at 7), not on every run.

    A check of those metrics that asks for a mail gets a key (metric, item, status,
    the certificate's notAfter); a key mailed before (``previous``) no longer asks.
    Returns {checks, keys}: ``keys`` is what to remember after this run, so a
    certificate that is renewed and later crosses again is mailed again.
    """
    previous = set(previous or [])
    out, keys = [], []
    for check in checks or []:
        check = dict(check)
        if check.get('metric') in metrics and check.get('notify'):
            key = '|'.join(str(check.get(k) or '') for k in ('metric', 'item', 'status',
                                                            'not_after'))
            keys.append(key)
            if key in previous:
                check['notify'] = False
                if 'msg' in check:
                    check = more(check, msg('detail.mailed'))
                else:
                    check['message'] += ' (mailed when it crossed the limit)'
        out.append(check)
    return dict(checks=out, keys=sorted(set(keys)))


def report_summary(checks):
    """Counts and overall status of a list of checks."""
    counts = dict(ok=0, warn=0, breach=0)
    for check in checks or []:
        counts[check['status']] += 1
    status = 'ok'
    if counts['breach']:
        status = 'breach'
    elif counts['warn']:
        status = 'warn'
    return dict(
        status=status,
        total=sum(counts.values()),
        ok=counts['ok'], warn=counts['warn'], breach=counts['breach'],
        breaches=[c['message'] for c in checks or [] if c['status'] == 'breach'],
        warnings=[c['message'] for c in checks or [] if c['status'] == 'warn'],
        notify=any(c.get('notify') for c in checks or []),
    )


def _label_value(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _metric_name(prefix):
    name = re.sub(r'[^a-zA-Z0-9_]', '_', prefix or 'bmops')
    return name if re.match(r'^[a-zA-Z_]', name) else '_' + name


def prometheus(checks, prefix='bmops', check='daily', timestamp=None):
    """node_exporter textfile content for a list of checks."""
    p = _metric_name(prefix)
    series = dict(status=[], value=[], limit=[])
    for c in checks or []:
        labels = 'check="{}",metric="{}",item="{}"'.format(
            _label_value(check), _label_value(c['metric']),
            _label_value('' if c.get('item') is None else c['item']))
        series['status'].append(f"{p}_check_status{{{labels}}} {STATUS_ORDER[c['status']]}")
        for key in ('value', 'limit'):
            v = c.get(key)
            if isinstance(v, bool):
                v = int(v)
            if isinstance(v, (int, float)):
                series[key].append(f'{p}_check_{key}{{{labels}}} {v!r}')
    summary = report_summary(checks)
    lines = [
        f'# HELP {p}_check_status Status of one bmops check: 0 ok, 1 warn, 2 breach.',
        f'# TYPE {p}_check_status gauge',
    ] + series['status'] + [
        f'# HELP {p}_check_value Measured value of one bmops check.',
        f'# TYPE {p}_check_value gauge',
    ] + series['value'] + [
        f'# HELP {p}_check_limit Limit the value of one bmops check is compared with.',
        f'# TYPE {p}_check_limit gauge',
    ] + series['limit'] + [
        f'# HELP {p}_run_status Overall status of the last run: 0 ok, 1 warn, 2 breach.',
        f'# TYPE {p}_run_status gauge',
        f'{p}_run_status{{check="{_label_value(check)}"}} {STATUS_ORDER[summary["status"]]}',
        f'# HELP {p}_run_breaches Breached checks in the last run.',
        f'# TYPE {p}_run_breaches gauge',
        f'{p}_run_breaches{{check="{_label_value(check)}"}} {summary["breach"]}',
    ]
    if timestamp is not None:
        lines += [
            f'# HELP {p}_run_timestamp_seconds Unix time of the last run.',
            f'# TYPE {p}_run_timestamp_seconds gauge',
            f'{p}_run_timestamp_seconds{{check="{_label_value(check)}"}} {float(timestamp)!r}',
        ]
    return '\n'.join(lines) + '\n'


def stats_summary(summaries):
    """Merge per-host {host, status, breaches, warnings, report} into one set_stats value."""
    hosts = {}
    status = 'ok'
    breaches, warnings = [], []
    for s in summaries or []:
        hosts[s['host']] = dict(status=s['status'], breaches=s['breaches'],
                                warnings=s.get('warnings', []), report=s['report'])
        if STATUS_ORDER[s['status']] > STATUS_ORDER[status]:
            status = s['status']
        breaches += ['{}: {}'.format(s['host'], b) for b in s['breaches']]
        warnings += ['{}: {}'.format(s['host'], w) for w in s.get('warnings', [])]
    reports = [h['report'] for h in hosts.values()]
    return dict(status=status, breaches=breaches, warnings=warnings,
                report=reports[0] if len(reports) == 1 else None, hosts=hosts)


def daily_limits(overrides=None):
    """The daily check's thresholds: DAILY_DEFAULTS with bm_daily_thresholds applied.

    One source for the daily check and the monitoring's alert rules (role monitoring).
    """
    return _thresholds(DAILY_DEFAULTS, overrides)


class FilterModule:
    """bmops check filters."""

    def filters(self):
        return {
            'bm_evaluate_daily': evaluate_daily,
            'bm_evaluate_weekly': evaluate_weekly,
            'bm_report_summary': report_summary,
            'bm_notify_once': notify_once,
            'bm_prometheus': prometheus,
            'bm_certificate_checks': certificate_checks,
            'bm_apt_upgrades': apt_upgrades,
            'bm_stats_summary': stats_summary,
            'bm_daily_limits': daily_limits,
        }
