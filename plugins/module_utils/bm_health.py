# SPDX-License-Identifier: Apache-2.0
"""Fact gathering for bm_health_info: HTTP health, backup jobs, storage, logs,
Redis and the Compose project's containers.

Every gatherer returns a dict with an ``error`` key (None when it worked): one
failing section never stops the others, so the daily report is still written
when the database is down."""

from __future__ import annotations

import datetime
import json
import os
import re
import time
import urllib.error
import urllib.request

from ansible.module_utils.bm_common import jsonable, percent, short_error

try:
    import docker  # Docker SDK for Python
    HAS_DOCKER_SDK = True
except ImportError:  # pragma: no cover - depends on the host
    docker = None
    HAS_DOCKER_SDK = False

SECTIONS = ('health', 'jobs', 'storage', 'logs', 'redis', 'containers')

# Parameters available to the job / storage SQL: %(window_hours)s, %(limit)s.
JOBS_SUMMARY_SQL = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'success') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed
  FROM backup_jobs
 WHERE status IN ('success', 'failed')
   AND finished_at >= now() - make_interval(hours => %(window_hours)s)
"""

FAILED_JOBS_SQL = """
SELECT id, name, error, finished_at
  FROM backup_jobs
 WHERE status = 'failed'
   AND finished_at >= now() - make_interval(hours => %(window_hours)s)
 ORDER BY finished_at DESC
 LIMIT %(limit)s
"""

STORAGE_SQL = """
SELECT name, path, capacity_bytes, used_bytes
  FROM storage_targets
 ORDER BY name
"""

PROJECT_LABEL = 'com.docker.compose.project'
SERVICE_LABEL = 'com.docker.compose.service'

# A level word: JSON ("level": "error", "levelname": "ERROR") or plain text
# ("ERROR", "[ERROR]", "level=error"). CRITICAL / FATAL count as errors. In plain
# text only upper-case level words count, so "no error" in an INFO line does not.
_JSON_LEVEL_KEYS = ('level', 'levelname', 'severity', 'log.level')
_LEVEL_RE = re.compile(r'\b(CRITICAL|FATAL|ERROR|WARNING|WARN)\b')
_LEVEL_KV_RE = re.compile(r'\blevel(?:name)?[=:]\s*"?(\w+)', re.IGNORECASE)
_LEVEL_MAP = {'critical': 'error', 'fatal': 'error', 'error': 'error', 'err': 'error',
              'warning': 'warning', 'warn': 'warning'}


# --------------------------------------------------------------------- HTTP
def http_probe(url, timeout=5.0, body_limit=2048, opener=None):
    """GET url; never raises. Returns status (None when unreachable), body, latency."""
    result = dict(url=url, status=None, ok=False, body=None, json=None,
                  latency_ms=None, error=None)
    if not url.startswith(('http://', 'https://')):
        result['error'] = f'not an http(s) URL: {url}'
        return result
    opener = opener or urllib.request.build_opener()
    # The scheme is checked above (S310: no file:// or custom schemes).
    request = urllib.request.Request(url, headers={'User-Agent': 'bmops-health-check'})  # noqa: S310
    started = time.monotonic()
    try:
        try:
            response = opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:  # 4xx/5xx still carry status and body
            response = exc
        with response:
            raw = response.read(body_limit)
            result['status'] = int(response.getcode())
    except Exception as exc:
        result['error'] = short_error(exc)
        result['latency_ms'] = round((time.monotonic() - started) * 1000.0, 1)
        return result
    result['latency_ms'] = round((time.monotonic() - started) * 1000.0, 1)
    result['body'] = raw.decode('utf-8', 'replace')
    try:
        result['json'] = json.loads(result['body'])
    except ValueError:
        result['json'] = None
    result['ok'] = result['status'] == 200
    return result


def gather_health(base_url, timeout=5.0, opener=None):
    base = base_url.rstrip('/')
    ready = http_probe(base + '/health/ready', timeout, opener=opener)
    live = http_probe(base + '/health/live', timeout, opener=opener)
    error = None
    if ready['status'] is None and live['status'] is None:
        error = 'backend unreachable at {}: {}'.format(base, ready['error'])
    return dict(ready=ready, live=live, error=error)


# --------------------------------------------------------------------- jobs
def shape_jobs(summary_row, failed_rows, window_hours):
    """Result of the jobs section from the two query results."""
    summary_row = summary_row or {}
    total = int(summary_row.get('total') or 0)
    succeeded = int(summary_row.get('succeeded') or 0)
    failed = int(summary_row.get('failed') or 0)
    return dict(
        window_hours=window_hours,
        total=total,
        succeeded=succeeded,
        failed=failed,
        # None, not 0 or 100, when no job finished: the rate is undefined and
        # the daily evaluation decides what that means (see bm_evaluate_daily).
        success_rate=percent(succeeded, total),
        failed_jobs=[jsonable(dict(row)) for row in failed_rows or []],
        error=None,
    )


def gather_jobs(conn, window_hours, limit, summary_sql=None, failed_sql=None):
    params = dict(window_hours=int(window_hours), limit=int(limit))
    with conn.cursor() as cur:
        cur.execute(summary_sql or JOBS_SUMMARY_SQL, params)
        summary = cur.fetchone()
        cur.execute(failed_sql or FAILED_JOBS_SQL, params)
        failed = cur.fetchall()
    return shape_jobs(summary, failed, window_hours)


# ------------------------------------------------------------------ storage
def shape_storage_target(row):
    row = jsonable(dict(row))
    row['used_percent'] = percent(row.get('used_bytes'), row.get('capacity_bytes'))
    return row


def gather_storage_targets(conn, sql=None):
    with conn.cursor() as cur:
        cur.execute(sql or STORAGE_SQL)
        return [shape_storage_target(row) for row in cur.fetchall()]


def filesystem_usage(path, statvfs=os.statvfs):
    """Usage as df shows it: used / (used + available to unprivileged users)."""
    try:
        st = statvfs(path)
    except OSError as exc:
        return dict(path=path, error=short_error(exc), total_bytes=None,
                    used_bytes=None, free_bytes=None, used_percent=None)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return dict(path=path, error=None, total_bytes=total, used_bytes=used, free_bytes=free,
                used_percent=percent(used, used + free))


# --------------------------------------------------------------------- logs
def level_patterns(error_pattern=None, warning_pattern=None):
    """(error, warning) compiled regexes of a backend's own log format, or None
    for the automatic detection below. Raises re.error for a bad pattern."""
    if not error_pattern and not warning_pattern:
        return None
    return (re.compile(error_pattern) if error_pattern else None,
            re.compile(warning_pattern) if warning_pattern else None)


def line_level(line, patterns=None):
    """'error', 'warning' or None for one log line (JSON or plain text).

    With PATTERNS (level_patterns()) only they decide: a line that matches the
    error regex is an error, else one that matches the warning regex a warning."""
    if patterns is not None:
        error_re, warning_re = patterns
        if error_re is not None and error_re.search(line):
            return 'error'
        if warning_re is not None and warning_re.search(line):
            return 'warning'
        return None
    text = line.strip()
    if text.startswith('{'):
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict):
            for key in _JSON_LEVEL_KEYS:
                value = record.get(key)
                if isinstance(value, str):
                    return _LEVEL_MAP.get(value.strip().lower())
            return None
    match = _LEVEL_KV_RE.search(text)
    if match:
        return _LEVEL_MAP.get(match.group(1).lower())
    match = _LEVEL_RE.search(text)
    if match:
        return _LEVEL_MAP[match.group(1).lower()]
    return None


def count_log_levels(lines, sample_lines=5, sample_chars=500, patterns=None):
    """Count ERROR / WARNING lines; keep the last few error and warning lines."""
    counts = dict(error=0, warning=0, lines=0)
    samples = dict(error=[], warning=[])
    for line in lines:
        if not line.strip():
            continue
        counts['lines'] += 1
        level = line_level(line, patterns)
        if level:
            counts[level] += 1
            samples[level].append(line.rstrip()[:sample_chars])
            if len(samples[level]) > sample_lines:
                samples[level].pop(0)
    counts['samples'] = samples
    return counts


# ------------------------------------------------------------------- docker
class DockerCli:
    """The docker CLI through module.run_command (argument lists, no shell)."""

    method = 'cli'

    def __init__(self, module, executable='docker'):
        self.module = module
        self.docker = module.get_bin_path(executable, required=False) or executable

    def _run(self, args, environ_update=None):
        rc, out, err = self.module.run_command([self.docker, *args],
                                               environ_update=environ_update)
        if rc != 0:
            detail = ' '.join((err or out).split())[:300]
            raise RuntimeError(f'docker {args[0]} failed (rc={rc}): {detail}')
        return out, err

    def project_containers(self, project):
        out, _err = self._run(['ps', '--all', '--quiet', '--no-trunc',
                                '--filter', f'label={PROJECT_LABEL}={project}'])
        ids = [line.strip() for line in out.splitlines() if line.strip()]
        if not ids:
            return []
        out, _err = self._run(['inspect', *ids])
        return [container_from_inspect(item) for item in json.loads(out)]

    def logs(self, container_id, since):
        # docker logs writes the container's stderr stream to our stderr.
        out, err = self._run(['logs', '--since', since, container_id])
        return (out or '').splitlines() + (err or '').splitlines()

    def exec_env(self, container_id, argv, env):
        # "-e NAME" without a value: docker copies it from its own environment,
        # so the secret is never on a command line that ps shows.
        args = ['exec']
        for name in sorted(env):
            args += ['-e', name]
        rc, out, err = self.module.run_command([self.docker, *args, container_id, *argv],
                                               environ_update=env)
        return rc, out, err


class DockerSdk:
    """The Docker SDK for Python (docker.from_env())."""

    method = 'sdk'

    def __init__(self, client=None):
        self.client = client or docker.from_env(timeout=30)

    def project_containers(self, project):
        found = self.client.containers.list(
            all=True, filters={'label': f'{PROJECT_LABEL}={project}'})
        return [container_from_inspect(c.attrs) for c in found]

    def logs(self, container_id, since):
        raw = self.client.containers.get(container_id).logs(
            stdout=True, stderr=True, since=since_datetime(since), timestamps=False)
        return raw.decode('utf-8', 'replace').splitlines()

    def exec_env(self, container_id, argv, env):
        result = self.client.containers.get(container_id).exec_run(argv, environment=env)
        out = (result.output or b'').decode('utf-8', 'replace')
        return result.exit_code, out, ''


def since_datetime(since):
    """'24h' / '90m' → aware datetime in UTC (what the SDK wants)."""
    match = re.match(r'^(\d+)([hm])$', since)
    amount = int(match.group(1))
    delta = datetime.timedelta(hours=amount) if match.group(2) == 'h' \
        else datetime.timedelta(minutes=amount)
    return datetime.datetime.now(datetime.UTC) - delta


def container_from_inspect(attrs):
    """One entry of the containers section from `docker inspect` / SDK attrs."""
    state = attrs.get('State') or {}
    config = attrs.get('Config') or {}
    labels = config.get('Labels') or {}
    health = (state.get('Health') or {}).get('Status')
    return dict(
        id=(attrs.get('Id') or '')[:12],
        name=(attrs.get('Name') or '').lstrip('/'),
        service=labels.get(SERVICE_LABEL),
        state=state.get('Status'),
        running=bool(state.get('Running')),
        health=health,  # None when the image has no HEALTHCHECK
        exit_code=state.get('ExitCode'),
        restart_count=int(attrs.get('RestartCount') or 0),
        started_at=state.get('StartedAt'),
        image=config.get('Image'),
    )


def gather_containers(backend, project):
    items = backend.project_containers(project)
    items.sort(key=lambda c: (c['service'] or '', c['name']))
    return dict(project=project, method=backend.method, items=items, error=None)


def gather_logs(backend, containers, services, window_hours, sample_lines, patterns=None):
    since = f'{int(window_hours)}h'
    result = dict(window_hours=window_hours, method=backend.method, services={}, error=None)
    errors = []
    for service in services:
        entry = dict(error=0, warning=0, lines=0, samples=dict(error=[], warning=[]),
                     containers=[], read_error=None)
        members = [c for c in containers if c['service'] == service]
        if not members:
            entry['read_error'] = f'no container for service {service} in the project'
            errors.append(entry['read_error'])
        for container in members:
            entry['containers'].append(container['name'])
            try:
                lines = backend.logs(container['id'], since)
            except Exception as exc:
                entry['read_error'] = short_error(exc)
                errors.append('{}: {}'.format(service, entry['read_error']))
                continue
            counted = count_log_levels(lines, sample_lines, patterns=patterns)
            for key in ('error', 'warning', 'lines'):
                entry[key] += counted[key]
            for key in ('error', 'warning'):
                entry['samples'][key] = (entry['samples'][key]
                                         + counted['samples'][key])[-sample_lines:]
        result['services'][service] = entry
    if errors:
        result['error'] = '; '.join(errors)
    return result


def redis_from_reply(rc, out, err, method):
    reply = ' '.join((out or '').split())
    ok = rc == 0 and reply.upper().endswith('PONG')
    error = None
    if not ok:
        # redis-cli prints NOAUTH / WRONGPASS on stdout with rc 0.
        error = ' '.join(('{} {}'.format(out or '', err or '')).split())[:300] or f'rc={rc}'
    return dict(method=method, ok=ok, response=reply[:100] or None, error=error)


def redis_ping_docker(backend, containers, service, password):
    members = [c for c in containers if c['service'] == service and c['running']]
    if not members:
        return dict(method='docker-exec', ok=False, response=None,
                    error=f'no running container for service {service}')
    env = {'REDISCLI_AUTH': password} if password else {}
    rc, out, err = backend.exec_env(members[0]['id'], ['redis-cli', 'ping'], env)
    return redis_from_reply(rc, out, err, 'docker-exec')


def redis_ping_python(host, port, password, timeout):
    import redis  # only called when the caller checked it is importable
    try:
        client = redis.Redis(host=host, port=port, password=password or None,
                             socket_timeout=timeout, socket_connect_timeout=timeout)
        reply = client.ping()
    except Exception as exc:
        return dict(method='python', ok=False, response=None, error=short_error(exc))
    return dict(method='python', ok=bool(reply), response='PONG' if reply else None,
                error=None if reply else 'no reply')
