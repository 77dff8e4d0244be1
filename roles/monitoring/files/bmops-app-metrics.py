#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""bmops-app-metrics: the daily check's application facts as a Prometheus textfile.

Run by the systemd timer bmops-app-metrics.timer (role monitoring) every minute
or so; writes <textfile_dir>/bmops_app.prom atomically for node_exporter's
textfile collector. The same queries as the daily check (bm_health_info):
job success rate and failed jobs in the window, storage targets and file
systems, ERROR log lines of the log services, the state and restart count
of every container of the Compose project, and the replication slots that
hold WAL for point-in-time recovery (stream up, lag, WAL held, free space)
and, read from the repository host over SFTP every few minutes, the newest
base backup Barman finished there (its end time and how many it keeps).
Stdlib only; the database is read with psql inside the db container (no
password on any command line).

    bmops-app-metrics --config /etc/bmops/app-metrics.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

# The reference app's queries, used when the configuration (bm_backend_*_sql)
# has none; kept equal to plugins/module_utils/bm_health.py (a unit test
# compares them). %(window_hours)s is filled in with Python's % (an integer).
JOBS_SUMMARY_SQL = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'success') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed
  FROM backup_jobs
 WHERE status IN ('success', 'failed')
   AND finished_at >= now() - make_interval(hours => %(window_hours)s)
"""

STORAGE_SQL = """
SELECT name, path, capacity_bytes, used_bytes
  FROM storage_targets
 ORDER BY name
"""

# Every replication slot (Barman's for point-in-time recovery): is a client
# streaming, how much WAL it holds back, how much more it may hold before
# max_slot_wal_keep_size gives it up (-1: no limit), and the write lag.
WAL_SLOTS_SQL = """
SELECT s.slot_name,
       s.active::int,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)::bigint,
       coalesce(s.safe_wal_size, -1),
       coalesce(extract(epoch FROM r.write_lag), 0)
  FROM pg_replication_slots s
  LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
 ORDER BY s.slot_name
"""
DB_DATA_DIR = '/var/lib/postgresql/data'
# The repository host rewrites the base backups' status every 5 minutes (its cron);
# older than this, the cron there has stopped.
STATUS_STALE_SECONDS = 3600

PROJECT_LABEL = 'com.docker.compose.project'
SERVICE_LABEL = 'com.docker.compose.service'

_JSON_LEVEL_KEYS = ('level', 'levelname', 'severity', 'log.level')
_LEVEL_RE = re.compile(r'\b(CRITICAL|FATAL|ERROR|WARNING|WARN)\b')
_LEVEL_KV_RE = re.compile(r'\blevel(?:name)?[=:]\s*"?(\w+)', re.IGNORECASE)
_LEVEL_MAP = {'critical': 'error', 'fatal': 'error', 'error': 'error', 'err': 'error',
              'warning': 'warning', 'warn': 'warning'}


def level_patterns(error_pattern=None, warning_pattern=None):
    """(error, warning) regexes of the backend's log format, or None (as bm_health)."""
    if not error_pattern and not warning_pattern:
        return None
    return (re.compile(error_pattern) if error_pattern else None,
            re.compile(warning_pattern) if warning_pattern else None)


def line_level(line, patterns=None):
    """'error', 'warning' or None for one log line (as bm_health.line_level)."""
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


def percent(part, whole, digits=2):
    if part is None or not whole:
        return None
    return round(100.0 * float(part) / float(whole), digits)


def docker(*args, timeout=60):
    proc = subprocess.run(['docker', *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f'docker {args[0]} failed: {proc.stderr.strip()[:200]}')
    return proc.stdout


def containers(project):
    ids = docker('ps', '-aq', '--filter', f'label={PROJECT_LABEL}={project}').split()
    if not ids:
        return []
    out = []
    for attrs in json.loads(docker('inspect', *ids)):
        state = attrs.get('State') or {}
        labels = (attrs.get('Config') or {}).get('Labels') or {}
        health = (state.get('Health') or {}).get('Status')
        mounts = {m.get('Destination'): m.get('Source') for m in attrs.get('Mounts') or []}
        out.append(dict(id=attrs['Id'], service=labels.get(SERVICE_LABEL, ''),
                        running=bool(state.get('Running')), health=health,
                        restarts=int(attrs.get('RestartCount') or 0), mounts=mounts))
    return out


def psql(db_container, user, dbname, sql):
    """Rows of SQL (fields split on '|') through psql inside the db container."""
    proc = subprocess.run(
        ['docker', 'exec', '-i', db_container, 'psql', '-X', '-U', user, '-d', dbname,
         '-AtqF', '|', '-v', 'ON_ERROR_STOP=1'],
        input=sql, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f'psql failed: {proc.stderr.strip()[:200]}')
    return [line.split('|') for line in proc.stdout.splitlines() if line]


def esc(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', ' ')


class Out:
    def __init__(self):
        self.lines = []
        self.seen = set()

    def add(self, name, value, help_text, labels=None):
        if name not in self.seen:
            self.seen.add(name)
            self.lines.append(f'# HELP {name} {help_text}')
            self.lines.append(f'# TYPE {name} gauge')
        lab = ''
        if labels:
            lab = '{' + ','.join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + '}'
        self.lines.append(f'{name}{lab} {value}')

    def text(self):
        return '\n'.join(self.lines) + '\n'


def collect(cfg, now=None):
    """Gather every section; a failing section is reported, never fatal."""
    out = Out()
    window = int(cfg.get('window_hours', 24))
    errors = {}
    try:
        items = containers(cfg['project'])
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        items, errors['containers'] = [], str(exc)
    by_service = {}
    for item in items:
        by_service.setdefault(item['service'], item)
    for service in cfg.get('services', []):
        item = by_service.get(service)
        up = 1 if item and item['running'] and item['health'] in (None, 'healthy',
                                                                  'starting') else 0
        out.add('bmops_container_up', up,
                'Container of the service running and not unhealthy (1) or not (0).',
                dict(service=service))
        out.add('bmops_container_restart_count', item['restarts'] if item else 0,
                'Restarts of the service container since it was created.',
                dict(service=service))

    db = by_service.get(cfg.get('db_service', 'db'))
    if db and db['running']:
        try:
            sql = (cfg.get('jobs_summary_sql') or JOBS_SUMMARY_SQL) % dict(window_hours=window,
                                                                            limit=20)
            total, succeeded, failed = (int(v or 0) for v in
                                        psql(db['id'], cfg['db_user'], cfg['db_name'], sql)[0])
            labels = dict(window_hours=window)
            out.add('bmops_app_jobs_finished', total,
                    'Backup jobs finished in the window (success or failed).', labels)
            out.add('bmops_app_jobs_failed', failed, 'Failed backup jobs in the window.',
                    labels)
            rate = percent(succeeded, total)
            if rate is not None:
                out.add('bmops_app_job_success_rate_percent', rate,
                        'Job success rate in the window, percent (absent without jobs).',
                        labels)
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError,
                IndexError) as exc:
            errors['jobs'] = str(exc)
        storage_sql = cfg.get('storage_sql', STORAGE_SQL)
        try:
            rows = psql(db['id'], cfg['db_user'], cfg['db_name'], storage_sql) \
                if storage_sql else []
            for name, path, capacity, used in rows:
                value = percent(int(used or 0), int(capacity or 0))
                if value is not None:
                    out.add('bmops_app_storage_used_percent', value,
                            'Storage used, percent (targets and file systems).',
                            dict(kind='target', name=name or path))
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
            errors['storage'] = str(exc)
        try:
            wal_slots(out, db, cfg)
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
            errors['wal'] = str(exc)
    else:
        errors['jobs'] = errors['storage'] = errors['wal'] = 'the db container is not running'

    for path in cfg.get('paths', []):
        try:
            st = os.statvfs(path)
        except OSError as exc:
            errors['filesystems'] = str(exc)
            continue
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        free = st.f_bavail * st.f_frsize
        value = percent(used, used + free)
        if value is not None:
            out.add('bmops_app_storage_used_percent', value,
                    'Storage used, percent (targets and file systems).',
                    dict(kind='filesystem', name=path))

    try:
        patterns = level_patterns(cfg.get('log_error_pattern'), cfg.get('log_warning_pattern'))
        log_services = cfg.get('log_services', [])
    except re.error as exc:
        errors['logs'] = f'bm_backend_log_error/warning_pattern is not a valid regex: {exc}'
        log_services = []
    for service in log_services:
        item = by_service.get(service)
        if not item:
            continue
        try:
            proc = subprocess.run(['docker', 'logs', '--since', f'{window}h', item['id']],
                                  capture_output=True, text=True, timeout=120)
            lines = (proc.stdout + proc.stderr).splitlines()
            count = sum(1 for line in lines
                        if line.strip() and line_level(line, patterns) == 'error')
            out.add('bmops_app_error_log_lines', count,
                    'ERROR log lines of the service in the window.',
                    dict(service=service, window_hours=window))
        except (OSError, subprocess.SubprocessError) as exc:
            errors['logs'] = str(exc)

    sections = ['containers', 'jobs', 'storage', 'filesystems', 'logs', 'wal']
    if cfg.get('base_backup_file'):
        sections.append('base_backup')
        try:
            base_backups(out, cfg['base_backup_file'], now or time.time())
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError,
                KeyError) as exc:
            errors['base_backup'] = str(exc)
    for section in sections:
        out.add('bmops_app_metrics_error', 1 if section in errors else 0,
                'A section of bmops-app-metrics could not be measured (1).',
                dict(section=section))
    out.add('bmops_app_metrics_timestamp_seconds', f'{now or time.time():.0f}',
            'When bmops-app-metrics last ran.')
    return out.text(), errors


def wal_slots(out, db, cfg):
    """The WAL each replication slot holds, and the free space it would fill."""
    rows = psql(db['id'], cfg['db_user'], cfg['db_name'], WAL_SLOTS_SQL)
    if not rows:
        return
    source = (db.get('mounts') or {}).get(DB_DATA_DIR)
    free = None
    if source:
        st = os.statvfs(source)
        free = st.f_bavail * st.f_frsize
    for slot, active, retained, safe, lag in rows:
        labels = dict(slot=slot)
        out.add('bmops_wal_slot_active', int(active),
                'A client streams from the replication slot (1) or none does (0).', labels)
        out.add('bmops_wal_slot_retained_bytes', int(retained),
                'WAL the replication slot holds back on the database volume, bytes.', labels)
        if int(safe) >= 0:
            out.add('bmops_wal_slot_safe_bytes', int(safe),
                    'WAL that may still be written before max_slot_wal_keep_size gives '
                    'the slot up, bytes.', labels)
        out.add('bmops_wal_write_lag_seconds', float(lag),
                'Write lag of the client streaming from the slot, seconds (0 when idle).',
                labels)
        if free is not None:
            out.add('bmops_wal_volume_free_bytes', free,
                    'Free space of the database volume the slot\'s WAL fills, bytes.',
                    labels)


def fetch_status(link, now):
    """The repository host's status file, fetched over SFTP at most every
    refresh_seconds into a local copy; an older copy is kept when the fetch fails."""
    cache = link['cache']
    try:
        age = now - os.stat(cache).st_mtime
    except FileNotFoundError:
        age = None
    error = None
    if age is None or age >= int(link.get('refresh_seconds', 300)):
        tmp = f'{cache}.part'
        proc = subprocess.run(
            ['sftp', '-q', '-F', link['ssh_config'], '-b', '-', link['ssh_host']],
            input=f'get {link["remote"]} {tmp}\n', capture_output=True, text=True,
            timeout=60)
        if proc.returncode == 0 and os.path.exists(tmp):
            os.replace(tmp, cache)
        else:
            error = (f'sftp {link["ssh_host"]}: get {link["remote"]} failed: '
                     f'{(proc.stderr or proc.stdout).strip()[:200]}')
    if not os.path.exists(cache):
        raise RuntimeError(error or f'{cache} is missing')
    with open(cache, encoding='utf-8') as fh:
        status = dict(line.split(None, 1) for line in fh.read().splitlines() if line.strip())
    return {k: int(v) for k, v in status.items()}, error


def base_backups(out, link_file, now):
    """The newest base backup Barman finished on the repository host, and how many."""
    with open(link_file, encoding='utf-8') as fh:
        link = json.load(fh)
    status, error = fetch_status(link, now)
    labels = dict(server=link.get('server', ''))
    out.add('bmops_wal_base_backup_end_timestamp_seconds', status['last_end'],
            'End of the newest finished base backup on the repository host (0: none).',
            labels)
    out.add('bmops_wal_base_backups', status['done'],
            'Finished base backups the repository host keeps.', labels)
    if error:
        raise RuntimeError(error)
    stale = now - status['written']
    if stale > STATUS_STALE_SECONDS:
        raise RuntimeError(f'the repository host wrote the base backups\' status '
                           f'{stale / 60:.0f} min ago (cron of bmops-barman-status there)')


def write_atomic(directory, name, text):
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', dir=directory)
    with os.fdopen(fd, 'w') as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(directory, name))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='/etc/bmops/app-metrics.json')
    parser.add_argument('--stdout', action='store_true', help='print instead of writing')
    args = parser.parse_args(argv)
    with open(args.config, encoding='utf-8') as fh:
        cfg = json.load(fh)
    text, errors = collect(cfg)
    if args.stdout:
        sys.stdout.write(text)
    else:
        write_atomic(cfg['textfile_dir'], 'bmops_app.prom', text)
    for section, error in sorted(errors.items()):
        print(f'bmops-app-metrics: {section}: {error}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
