# SPDX-License-Identifier: Apache-2.0
"""Quarterly review (operations manual 2.2): findings from what the tools printed, pure functions.

The quarterly_review role runs the tools on the managed host (Lynis, testssl.sh,
``ss``, ``docker inspect``, ``find``, ``wrk``, ``pgbench``, ``redis-cli``) and hands
their output here. Every part ends in *findings*, ranked with the manual's 3.1
levels (P1 most urgent)::

    {priority: P1..P4, area: security|dependencies|benchmark, title, detail, action}

Nothing here talks to a server.
"""

from __future__ import annotations

import datetime
import ipaddress
import re

PRIORITIES = ('P1', 'P2', 'P3', 'P4')


def finding(priority, area, title, detail='', action=''):
    if priority not in PRIORITIES:
        raise ValueError(f'unknown priority {priority!r}')
    return dict(priority=priority, area=area, title=title, detail=detail, action=action)


def rank(findings):
    """Findings sorted most urgent first (stable inside a level), with a summary."""
    ordered = sorted(findings or [], key=lambda f: PRIORITIES.index(f['priority']))
    counts = {p: sum(1 for f in ordered if f['priority'] == p) for p in PRIORITIES}
    worst = next((p for p in PRIORITIES if counts[p]), None)
    return dict(findings=ordered, counts=counts, worst=worst)


def at_or_above(findings, priority):
    """Findings at PRIORITY or more urgent (P1 is the most urgent)."""
    limit = PRIORITIES.index(priority)
    return [f for f in findings or [] if PRIORITIES.index(f['priority']) <= limit]


# --------------------------------------------------------------------- Lynis
def lynis_report(text):
    """Parse Lynis's report file (key=value lines, list keys end in [])."""
    data = dict(hardening_index=None, tests_performed=None, lynis_version=None,
                warnings=[], suggestions=[])
    for line in (text or '').splitlines():
        key, sep, value = line.partition('=')
        if not sep:
            continue
        if key in ('warning[]', 'suggestion[]'):
            parts = [*value.split('|'), '', '', ''][:4]
            item = dict(id=parts[0], text=parts[1],
                        details='' if parts[2] == '-' else parts[2],
                        solution='' if parts[3] == '-' else parts[3])
            data['warnings' if key == 'warning[]' else 'suggestions'].append(item)
        elif key in ('hardening_index', 'lynis_tests_done'):
            try:
                number = int(value)
            except ValueError:
                continue
            data['hardening_index' if key == 'hardening_index' else 'tests_performed'] = number
        elif key == 'lynis_version':
            data['lynis_version'] = value
    return data


def lynis_findings(report, index_min=60):
    """Warnings are P3 (one each), a hardening index under INDEX_MIN is P3, suggestions P4."""
    found = []
    for w in report.get('warnings') or []:
        found.append(finding('P3', 'security', f"Lynis warning {w['id']}: {w['text']}",
                             w.get('details', ''),
                             w.get('solution') or f"lynis show details {w['id']}"))
    index = report.get('hardening_index')
    if index is not None and index < index_min:
        found.append(finding('P3', 'security', f'Lynis hardening index {index} < {index_min}',
                             '', 'Work through the Lynis suggestions in this report'))
    suggestions = report.get('suggestions') or []
    if suggestions:
        found.append(finding('P4', 'security', f'Lynis: {len(suggestions)} suggestion(s)',
                             ', '.join(sorted({s['id'] for s in suggestions})),
                             'Review them at the next planned maintenance'))
    return found


# ----------------------------------------------------------------- testssl.sh
TESTSSL_PROTOCOLS = {'SSLv2': 'P1', 'SSLv3': 'P1', 'TLS1': 'P2', 'TLS1_1': 'P2'}
TESTSSL_SEVERITY = {'CRITICAL': 'P1', 'HIGH': 'P2', 'MEDIUM': 'P3', 'LOW': 'P4'}


def testssl_results(items):
    """Shape testssl.sh's --jsonfile list: protocols, HSTS, chain, findings."""
    items = [i for i in items or [] if isinstance(i, dict)]
    by_id = {i.get('id'): i for i in items}
    protocols = {name: by_id[name].get('finding', '') for name in
                 ('SSLv2', 'SSLv3', 'TLS1', 'TLS1_1', 'TLS1_2', 'TLS1_3') if name in by_id}
    found = []
    for item in items:
        ident, severity = item.get('id', ''), (item.get('severity') or '').upper()
        text = item.get('finding', '')
        if ident == 'HSTS':
            if 'not offered' in text:
                found.append(finding('P3', 'security', 'TLS: no HSTS header', text,
                                     'Turn on HSTS in nginx (Strict-Transport-Security)'))
            continue
        if ident in TESTSSL_PROTOCOLS:
            if 'offered' in text and 'not offered' not in text:
                found.append(finding(TESTSSL_PROTOCOLS[ident], 'security',
                                     f"TLS: {ident.replace('_', '.')} is offered",
                                     text, 'Set nginx_proxy_ssl_protocols to TLSv1.2 TLSv1.3 '
                                     'and run site.yml --tags nginx'))
            continue
        if ident == 'engine_problem':  # no GOST engine in the host's openssl: irrelevant
            continue
        if severity == 'FATAL' or ident == 'scanProblem':
            found.append(finding('P3', 'security', f'testssl.sh could not finish: {ident}',
                                 text, 'Run testssl.sh by hand against the site and read why'))
        elif severity in TESTSSL_SEVERITY:
            found.append(finding(TESTSSL_SEVERITY[severity], 'security',
                                 f'TLS: {ident} ({severity})', text,
                                 'See the testssl.sh output kept beside this report'))
    hsts = (by_id.get('HSTS_time') or by_id.get('HSTS') or {}).get('finding', '')
    return dict(protocols=protocols, hsts=hsts,
                chain=by_id.get('cert_chain_of_trust', {}).get('finding', ''),
                findings=found)


# ----------------------------------------------------------------- sockets
_SS = re.compile(r'^(?P<proto>tcp|udp)\s+\S+\s+\d+\s+\d+\s+(?P<local>\S+)\s+\S+'
                 r'(?:\s+(?P<proc>.*))?$')
SENSITIVE_PORTS = {5432: 'PostgreSQL', 6379: 'Redis'}


def _split_address(local):
    host, _, port = local.rpartition(':')
    host = host.strip('[]').split('%')[0]
    return host, int(port) if port.isdigit() else None


def listeners(ss_text):
    """Parse `ss -H -l -n -t -u -p`: [{proto, address, port, process, exposure}]."""
    result = []
    for line in (ss_text or '').splitlines():
        match = _SS.match(line.strip())
        if not match:
            continue
        host, port = _split_address(match.group('local'))
        if port is None:
            continue
        procs = re.findall(r'\("([^"]+)"', match.group('proc') or '')
        if host in ('*', '0.0.0.0', '::', ''):  # noqa: S104 (recognises, binds nothing)
            exposure = 'all'
        else:
            try:
                exposure = 'loopback' if ipaddress.ip_address(host).is_loopback else 'address'
            except ValueError:
                exposure = 'address'
        result.append(dict(proto=match.group('proto'), address=host or '*', port=port,
                           process=','.join(sorted(set(procs))), exposure=exposure))
    return sorted(result, key=lambda s: (s['port'], s['proto'], s['address']))


def listener_findings(sockets, public_ports, allowed=()):
    """Anything not on loopback must be a public port or an allowed listener.

    ALLOWED holds ``PORT`` or ``ADDRESS:PORT`` strings (an exporter on the
    monitoring network, for example). PostgreSQL or Redis reachable: P1; any
    other unexpected listener: P2.
    """
    public = {int(p) for p in public_ports or []}
    allowed = {str(a) for a in allowed or []}
    found = []
    for s in sockets or []:
        if s['exposure'] == 'loopback' or s['port'] in public:
            continue
        if str(s['port']) in allowed or f"{s['address']}:{s['port']}" in allowed:
            continue
        what = SENSITIVE_PORTS.get(s['port'])
        where = 'every address' if s['exposure'] == 'all' else s['address']
        found.append(finding(
            'P1' if what else 'P2', 'security',
            f"{what or 'Unexpected listener'} on {where}, {s['proto']} port {s['port']}",
            f"process: {s['process'] or 'unknown'}",
            'Bind it to 127.0.0.1 (or the monitoring network) or stop it; if it is meant to '
            'be reachable, add it to quarterly_review_allowed_listeners'))
    return found


# --------------------------------------------------------------- containers
def container_findings(containers):
    """Privileged: P2. Host network or PID namespace, added capabilities: P3. Root: P4."""
    found = []
    for c in containers or []:
        name = (c.get('name') or '').lstrip('/')
        if c.get('privileged'):
            found.append(finding('P2', 'security', f'Container {name} runs privileged', '',
                                 'Remove privileged: true from its Compose service'))
        caps = [cap for cap in c.get('cap_add') or [] if cap]
        if caps:
            found.append(finding('P3', 'security', f'Container {name} has added capabilities',
                                 ', '.join(caps), 'Drop the cap_add entries it does not need'))
        for key, label in (('network_mode', 'network'), ('pid_mode', 'PID namespace')):
            if c.get(key) == 'host':
                found.append(finding('P3', 'security',
                                     f"Container {name} shares the host's {label}",
                                     '', f'Give it its own {label}'))
        user = str(c.get('user') or '').split(':')[0]
        if user in ('', '0', 'root'):
            found.append(finding('P4', 'security', f'Container {name} runs as root',
                                 f"image {c.get('image', '')}",
                                 'Run it as an unprivileged user where the image allows'))
    return found


# ----------------------------------------------------------- secret files
def secret_files(find_results):
    """The files of ansible.builtin.find results (a loop): [{path, mode, owner}]."""
    files = []
    for result in find_results or []:
        for f in result.get('files') or []:
            files.append(dict(path=f.get('path', ''), mode=str(f.get('mode', '')),
                              owner=f"{f.get('pw_name', '?')}:{f.get('gr_name', '?')}"))
    return sorted(files, key=lambda f: f['path'])


def secret_file_findings(files):
    """Secret files ({path, mode, owner}): readable or writable by others P2, group bits P3."""
    found = []
    for f in files or []:
        mode, path = int(f['mode'] or '0', 8), f['path']
        detail = f"mode {mode:04o}, owner {f.get('owner', '?')}"
        if mode & 0o007:
            found.append(finding('P2', 'security', f'Secret file readable by others: {path}',
                                 detail, f'chmod 0600 {path}'))
        elif mode & 0o070:
            found.append(finding('P3', 'security', f'Secret file open to its group: {path}',
                                 detail, f'chmod 0600 {path}'))
    return found


# ------------------------------------------------------------ dependencies
def _date(value):
    if isinstance(value, datetime.date):
        return value
    return datetime.date.fromisoformat(str(value))


def _cycle_key(cycle):
    return tuple(int(p) if p.isdigit() else 0 for p in str(cycle).split('.'))


def match_cycle(version, cycles):
    """The cycle of VERSION: the longest cycle that is VERSION or a dotted prefix of it."""
    version = str(version or '').strip()
    best = None
    for cycle in cycles or []:
        name = str(cycle.get('cycle'))
        matches = version == name or re.match(re.escape(name) + r'[.\-~+]', version)
        if matches and (best is None or len(name) > len(str(best['cycle']))):
            best = cycle
    return best


def _status(cycle, today, warn_days):
    """(status, eol, extended) of a cycle on TODAY; eol may be a date, true or false."""
    eol, extended = cycle.get('eol'), cycle.get('extended')
    extended = _date(extended) if extended not in (None, False, True) else None
    if eol is True:
        return 'eol', None, extended
    if eol in (None, False):
        return 'supported', None, extended
    eol = _date(eol)
    if eol <= today:
        if extended and extended > today:
            return 'extended', eol, extended
        return 'eol', eol, extended
    return ('eol_soon' if (eol - today).days < warn_days else 'supported'), eol, extended


def eol_review(versions, table, today, warn_days=183):
    """Hold the running VERSIONS ({product: version}) against the end-of-life TABLE.

    Returns ``{rows, findings, updated}``. A row's status is ``supported``,
    ``eol_soon`` (under WARN_DAYS left: P3), ``extended`` (past the regular end,
    inside long-term support: P3), ``eol`` (P2), ``unknown`` (no cycle in the
    table: P4, the table needs a line) or ``not found`` (no version read). A
    newer cycle than the running one is an upgrade to consider (P4). Products
    with ``follows: os`` take their support from the OS release's row.
    """
    today = _date(today)
    products = (table or {}).get('products') or {}
    versions = versions or {}
    rows, found = [], []
    os_row = None
    # the OS first (others follow it), then the rest in the order given
    order = sorted(versions, key=lambda c: (products.get(c) or {}).get('kind') != 'os')
    for component in order:
        product = products.get(component) or {}
        version = versions[component]
        row = dict(component=component, name=product.get('name', component),
                   version=str(version) if version not in (None, '') else None,
                   cycle=None, eol=None, extended=None, latest=product.get('latest'),
                   status='unknown', upgrade=False, follows=product.get('follows'),
                   source=product.get('source', ''))
        if row['version'] is None:
            row['status'] = 'not found'
        elif row['follows']:
            if os_row and os_row['cycle']:
                row.update(cycle=f"{os_row['name']} {os_row['cycle']}", eol=os_row['eol'],
                           extended=os_row['extended'], status=os_row['status'])
        else:
            cycle = match_cycle(row['version'], product.get('cycles'))
            if cycle is not None:
                status, eol, extended = _status(cycle, today, warn_days)
                row.update(cycle=str(cycle['cycle']), status=status,
                           eol=eol.isoformat() if eol else cycle.get('eol'),
                           extended=extended.isoformat() if extended else None)
                latest = row['latest']
                row['upgrade'] = bool(latest) and _cycle_key(latest) > _cycle_key(row['cycle'])
        row['eol_text'] = ('ended, date not recorded' if row['eol'] is True
                           else 'none announced' if row['eol'] is False
                           else row['eol'] or '-')
        if row['extended']:
            row['eol_text'] += f" (extended support {row['extended']})"
        if product.get('kind') == 'os':
            os_row = row
        rows.append(row)
    for row in rows:
        label = f"{row['name']} {row['version']}"
        via = f" (support follows {row['cycle']})" if row['follows'] else ''
        target = row['latest'] or 'a supported release'
        ended = row['eol'] if isinstance(row['eol'], str) else 'date not recorded'
        if row['status'] == 'eol':
            found.append(finding('P2', 'dependencies', f'{label} is past its end of life{via}',
                                 f'end of life: {ended}', f'Plan the upgrade to {target} now'))
        elif row['status'] == 'extended':
            found.append(finding('P3', 'dependencies',
                                 f'{label} is in extended support only{via}',
                                 f"regular support ended {ended}; extended until {row['extended']}",
                                 f'Schedule the upgrade to {target}'))
        elif row['status'] == 'eol_soon':
            found.append(finding('P3', 'dependencies',
                                 f'{label}: end of life in under 6 months{via}',
                                 f'end of life: {ended}', f'Schedule the upgrade to {target}'))
        elif row['status'] == 'unknown':
            found.append(finding('P4', 'dependencies', f'{label}: not in the end-of-life table',
                                 '', 'Add its release cycle to the table (see its source)'))
        if row['upgrade']:
            found.append(finding('P4', 'dependencies',
                                 f"{label}: newer major release available ({row['latest']})",
                                 '', 'Consider the upgrade at this review'))
    position = {component: i for i, component in enumerate(versions)}
    rows.sort(key=lambda r: position[r['component']])
    updated = (table or {}).get('updated')
    age = (today - _date(updated)).days if updated else 0
    if age > warn_days:
        found.append(finding('P4', 'dependencies', f'The end-of-life table is {age} days old',
                             f'updated {updated}',
                             'Refresh it from the sources it names (quarterly_review_eol_file)'))
    return dict(rows=rows, findings=found,
                updated=updated.isoformat() if isinstance(updated, datetime.date) else updated)


# --------------------------------------------------------------- benchmark
_UNITS = {'us': 0.001, 'ms': 1.0, 's': 1000.0, 'm': 60000.0}


def _ms(text):
    match = re.fullmatch(r'([\d.]+)(us|ms|s|m)', text.strip())
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3) if match else None


def wrk_output(text):
    """Parse `wrk --latency`: requests/s, p50/p90/p99 in ms, errors."""
    text = text or ''
    result = dict(requests_per_second=None, p50_ms=None, p90_ms=None, p99_ms=None,
                  requests=None, non_2xx=0, socket_errors=0)
    match = re.search(r'Requests/sec:\s+([\d.]+)', text)
    if match:
        result['requests_per_second'] = float(match.group(1))
    for pct in ('50', '90', '99'):
        match = re.search(rf'^\s+{pct}(?:\.000)?%\s+(\S+)', text, re.M)
        if match:
            result[f'p{pct}_ms'] = _ms(match.group(1))
    match = re.search(r'(\d+) requests in', text)
    if match:
        result['requests'] = int(match.group(1))
    match = re.search(r'Non-2xx or 3xx responses:\s+(\d+)', text)
    if match:
        result['non_2xx'] = int(match.group(1))
    match = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', text)
    if match:
        result['socket_errors'] = sum(int(g) for g in match.groups())
    return result


def wrk_errors(results):
    """What went wrong in a loop of wrk runs (registered results).

    A benchmark of error pages or refused connections measures nothing.
    """
    errors = []
    for r in results or []:
        if r.get('skipped'):
            continue
        path, parsed = r.get('item', '?'), wrk_output(r.get('stdout', ''))
        if r.get('rc', 0) != 0:
            stderr = (r.get('stderr') or '').strip()[:200]
            errors.append(f"wrk {path}: rc {r.get('rc')} {stderr}".strip())
        elif parsed['non_2xx']:
            errors.append(f"wrk {path}: {parsed['non_2xx']} of {parsed['requests']} "
                          "responses not 2xx/3xx")
        elif parsed['socket_errors']:
            errors.append(f"wrk {path}: {parsed['socket_errors']} socket errors")
    return errors


def pgbench_output(text):
    """Parse pgbench's summary: tps and average latency (ms)."""
    text = text or ''
    tps = re.search(r'^tps = ([\d.]+)', text, re.M)
    latency = re.search(r'^latency average = ([\d.]+) ms', text, re.M)
    return dict(tps=float(tps.group(1)) if tps else None,
                latency_ms=float(latency.group(1)) if latency else None)


def redis_latency(text):
    """Parse `redis-cli --latency` without a terminal: "min max avg samples" (ms)."""
    for line in reversed((text or '').strip().splitlines()):
        parts = line.split()
        if len(parts) == 4:
            try:
                low, high, avg, samples = (float(p) for p in parts)
            except ValueError:
                continue
            return dict(min_ms=low, max_ms=high, avg_ms=avg, samples=int(samples))
    return dict(min_ms=None, max_ms=None, avg_ms=None, samples=0)


# Which way is better for each benchmark figure; maxima are single samples,
# shown but never called a regression.
BENCH_HIGHER_BETTER = ('requests_per_second', 'tps')
BENCH_NOT_COMPARED = ('max_ms',)


def bench_compare(current, previous, limit_percent=20):
    """Compare this quarter's figures with the previous run's.

    CURRENT and PREVIOUS map ``name -> figure`` (name like ``http_ready.p99_ms``).
    A figure more than LIMIT_PERCENT worse is a P3 finding. Figures without a
    previous value are listed with ``change_percent`` None.
    """
    rows, found = [], []
    previous = previous or {}
    for name, value in sorted((current or {}).items()):
        before = previous.get(name)
        row = dict(name=name, value=value, previous=before, change_percent=None, worse=False)
        if isinstance(value, (int, float)) and isinstance(before, (int, float)) and before > 0:
            change = (value - before) / before * 100.0
            row['change_percent'] = round(change, 1)
            higher_better = name.rsplit('.', 1)[-1] in BENCH_HIGHER_BETTER
            worse_by = -change if higher_better else change
            if worse_by > limit_percent and name.rsplit('.', 1)[-1] not in BENCH_NOT_COMPARED:
                row['worse'] = True
                found.append(finding('P3', 'benchmark',
                                     f'{name} regressed {worse_by:.0f} % against the last review',
                                     f'{before} → {value}',
                                     'Find the cause before it becomes an incident (section 3.3)'))
        rows.append(row)
    return dict(rows=rows, findings=found)


def bench_figures(http, api, pg, redis):
    """Flatten the parsed benchmark results into ``name -> figure`` for the history."""
    figures = {}
    parts = (('http_ready', http), ('http_api', api), ('pgbench', pg), ('redis', redis))
    for prefix, data in parts:
        for key in ('requests_per_second', 'p50_ms', 'p90_ms', 'p99_ms', 'tps', 'latency_ms',
                    'avg_ms', 'max_ms'):
            value = (data or {}).get(key)
            if isinstance(value, (int, float)):
                figures[f'{prefix}.{key}'] = round(float(value), 3)
    return figures


def step_findings(errors, area):
    """A step of the review that could not run is a P3 finding: the review is incomplete."""
    return [finding('P3', area, f'Review step failed: {e}', '',
                    'Run the step by hand on the host and read why') for e in errors or []]


class FilterModule:
    def filters(self):
        return {
            'bm_review_rank': rank,
            'bm_review_at_or_above': at_or_above,
            'bm_review_lynis': lynis_report,
            'bm_review_lynis_findings': lynis_findings,
            'bm_review_testssl': testssl_results,
            'bm_review_listeners': listeners,
            'bm_review_listener_findings': listener_findings,
            'bm_review_container_findings': container_findings,
            'bm_review_secret_files': secret_files,
            'bm_review_secret_file_findings': secret_file_findings,
            'bm_review_eol': eol_review,
            'bm_review_wrk': wrk_output,
            'bm_review_wrk_errors': wrk_errors,
            'bm_review_pgbench': pgbench_output,
            'bm_review_redis_latency': redis_latency,
            'bm_review_bench_compare': bench_compare,
            'bm_review_bench_figures': bench_figures,
            'bm_review_step_findings': step_findings,
        }
