#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r'''
---
module: bm_health_info
short_description: Gather the daily health facts of the Backup Management System in one call
description:
  - Runs on the managed host and returns, in one call, every fact the daily checklist of the
    operations manual (section 1.1) needs, plus Redis and container state for triage.
  - C(/health/ready) and C(/health/live) of the backend (status, body, latency).
  - Backup jobs finished within a time window (total, succeeded, failed, success rate and the
    failed jobs), from the application database.
  - Storage usage of the C(storage_targets) table and/or of local file systems.
  - ERROR and WARNING line counts in the logs of selected Compose services, with sample lines.
  - A Redis C(PING) through C(redis-cli) inside the C(redis) container.
  - State, health, restart count and image of every container of the Compose project.
  - Each section reports its own C(error); a failing section (for example the database is down)
    never stops the others, so a report can always be written.
  - The module never changes anything.
version_added: "0.1.0"
author:
  - bmops contributors
options:
  sections:
    description:
      - Which sections to gather. Sections left out are returned as C(null).
    type: list
    elements: str
    choices: [health, jobs, storage, logs, redis, containers]
    default: [health, jobs, storage, logs, redis, containers]
  health_url:
    description: Base URL of the backend as seen from the managed host (C(bm_health_url)).
    type: str
    default: http://127.0.0.1:8000
  http_timeout:
    description: Timeout in seconds of each health request.
    type: float
    default: 5
  window_hours:
    description: Time window, in hours, for backup jobs and logs.
    type: int
    default: 24
  failed_jobs_limit:
    description: Maximum number of failed jobs listed in RV(jobs.failed_jobs).
    type: int
    default: 20
  jobs_summary_query:
    description:
      - SQL that returns one row with the columns C(total), C(succeeded) and C(failed).
      - May use the parameters C(%(window_hours\)s) and C(%(limit\)s).
      - The default reads C(backup_jobs) of the reference schema.
    type: str
  failed_jobs_query:
    description:
      - SQL that returns the failed jobs with the columns C(id), C(name), C(error), C(finished_at).
      - May use the parameters C(%(window_hours\)s) and C(%(limit\)s).
    type: str
  storage_targets:
    description: Read the C(storage_targets) table (or O(storage_query)).
    type: bool
    default: true
  storage_query:
    description: SQL that returns C(name), C(path), C(capacity_bytes), C(used_bytes).
    type: str
  paths:
    description: Local paths whose file system usage is reported (C(os.statvfs), like C(df)).
    type: list
    elements: path
    default: []
  project_name:
    description: Compose project name (label C(com.docker.compose.project)).
    type: str
    default: backup-mgmt
  log_services:
    description: Compose services whose logs are counted.
    type: list
    elements: str
    default: [backend, celery]
  log_sample_lines:
    description: Number of most recent ERROR and WARNING lines kept per service.
    type: int
    default: 5
  log_error_pattern:
    description:
      - Python regular expression that marks an error line in the backend's own log format
        (searched anywhere in the line; for example C(^\S+ \S+ ERR\b)).
      - When this or O(log_warning_pattern) is set, only the two patterns decide; when both are
        empty the level is detected automatically (a JSON C(level)/C(levelname)/C(severity) key,
        C(level=error), or an upper-case C(ERROR)/C(WARNING)/C(CRITICAL)/C(FATAL) word).
    type: str
  log_warning_pattern:
    description:
      - Python regular expression that marks a warning line (tried after O(log_error_pattern)).
    type: str
  docker_method:
    description:
      - How to talk to Docker. C(auto) uses the Docker SDK for Python when it is importable and
        the C(docker) CLI otherwise.
    type: str
    choices: [auto, sdk, cli]
    default: auto
  docker_cli:
    description: Name or path of the docker CLI.
    type: str
    default: docker
  redis_service:
    description: Compose service that runs Redis.
    type: str
    default: redis
  redis_method:
    description:
      - C(docker) runs C(redis-cli ping) in the Redis container with the password in the
        C(REDISCLI_AUTH) environment variable, never on a command line. Redis is not published
        on the host by the stack, so this is what C(auto) does.
      - C(python) uses the C(redis) Python library against O(redis_host):O(redis_port);
        only useful when Redis is reachable from the host.
    type: str
    choices: [auto, docker, python]
    default: auto
  redis_host:
    description: Redis host for O(redis_method=python).
    type: str
    default: 127.0.0.1
  redis_port:
    description: Redis port for O(redis_method=python).
    type: int
    default: 6379
  redis_password:
    description: Redis password (C(bm_redis_password)).
    type: str
extends_documentation_fragment:
  - bm_postgres
attributes:
  check_mode:
    support: full
    details: Reads only; the result is the same in check mode.
  diff_mode:
    support: none
requirements:
  - python3-psycopg (psycopg 3) on the managed host, for the jobs and storage sections
  - the docker CLI or the Docker SDK for Python on the managed host
notes:
  - The success rate is C(null) when no job finished in the window. The daily evaluation
    (filter C(bm_evaluate_daily)) reports that as C(warn) by default
    (threshold C(success_rate_no_jobs)).
  - CRITICAL and FATAL lines are counted as errors, WARN as warnings.
seealso:
  - module: bm_pg_stats_info
'''

EXAMPLES = r'''
- name: Gather the daily facts
  bm_health_info:
    health_url: "{{ bm_health_url }}"
    db_password: "{{ bm_db_password }}"
    redis_password: "{{ bm_redis_password }}"
    paths: [/backup/db, /var/lib/docker]
  register: __daily_facts

- name: Only HTTP and containers, over the last 6 hours
  bm_health_info:
    sections: [health, containers]
    window_hours: 6

- name: A deployment with another jobs schema
  bm_health_info:
    db_password: "{{ bm_db_password }}"
    jobs_summary_query: >-
      SELECT count(*) AS total, count(*) FILTER (WHERE ok) AS succeeded,
             count(*) FILTER (WHERE NOT ok) AS failed
        FROM job_runs WHERE ended >= now() - make_interval(hours => %(window_hours)s)
'''

RETURN = r'''
health:
  description: Backend health endpoints. C(null) when the section was not requested.
  returned: always
  type: dict
  contains:
    ready:
      description: C(GET /health/ready) with C(url), C(status) (null when unreachable), C(ok),
        C(body), C(json), C(latency_ms), C(error).
      type: dict
      returned: success
    live:
      description: C(GET /health/live), same keys as RV(health.ready).
      type: dict
      returned: success
    error:
      description: Set when neither endpoint answered.
      type: str
      returned: success
jobs:
  description: Backup jobs that finished within the window.
  returned: always
  type: dict
  sample:
    window_hours: 24
    total: 20
    succeeded: 19
    failed: 1
    success_rate: 95.0
    failed_jobs:
      - {id: 17, name: nightly-db, error: "disk full", finished_at: "2026-11-28T03:00:12+00:00"}
    error: null
storage:
  description: Storage usage. C(targets) from the database, C(filesystems) from O(paths);
    each entry has C(used_percent).
  returned: always
  type: dict
  sample:
    targets: [{name: nas1, path: /mnt/nas1, capacity_bytes: 1000, used_bytes: 700,
               used_percent: 70.0}]
    filesystems: [{path: /backup/db, total_bytes: 1000, used_bytes: 500, free_bytes: 500,
                   used_percent: 50.0, error: null}]
    error: null
logs:
  description: Per service C(error), C(warning), C(lines), C(samples), C(containers),
    C(read_error); plus C(method) (sdk or cli) and C(window_hours).
  returned: always
  type: dict
redis:
  description: C(method) (docker-exec or python), C(ok), C(response), C(error).
  returned: always
  type: dict
containers:
  description: C(project), C(method) and C(items), each with C(name), C(service), C(state),
    C(running), C(health), C(restart_count), C(exit_code), C(started_at), C(image).
  returned: always
  type: dict
errors:
  description: "One line per section that failed: C(<section>: <reason>)."
  returned: always
  type: list
  elements: str
'''

import re

from ansible.module_utils import bm_health
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_common import (
    connect_error_message,
    pg_argument_spec,
    pg_connect,
    require_psycopg,
    short_error,
)


def argument_spec():
    spec = pg_argument_spec()
    spec.update(
        sections=dict(type='list', elements='str', choices=list(bm_health.SECTIONS),
                      default=list(bm_health.SECTIONS)),
        health_url=dict(type='str', default='http://127.0.0.1:8000'),
        http_timeout=dict(type='float', default=5),
        window_hours=dict(type='int', default=24),
        failed_jobs_limit=dict(type='int', default=20),
        jobs_summary_query=dict(type='str'),
        failed_jobs_query=dict(type='str'),
        storage_targets=dict(type='bool', default=True),
        storage_query=dict(type='str'),
        paths=dict(type='list', elements='path', default=[]),
        project_name=dict(type='str', default='backup-mgmt'),
        log_services=dict(type='list', elements='str', default=['backend', 'celery']),
        log_sample_lines=dict(type='int', default=5),
        log_error_pattern=dict(type='str'),
        log_warning_pattern=dict(type='str'),
        docker_method=dict(type='str', choices=['auto', 'sdk', 'cli'], default='auto'),
        docker_cli=dict(type='str', default='docker'),
        redis_service=dict(type='str', default='redis'),
        redis_method=dict(type='str', choices=['auto', 'docker', 'python'], default='auto'),
        redis_host=dict(type='str', default='127.0.0.1'),
        redis_port=dict(type='int', default=6379),
        redis_password=dict(type='str', no_log=True),
    )
    return spec


class HealthGatherer:
    """Gathers the requested sections; each one records its own error."""

    def __init__(self, module, docker_backend=None, connect=pg_connect):
        self.module = module
        self.params = module.params
        self._docker = docker_backend
        self._connect = connect
        self._containers = None
        self.result = dict((name, None) for name in bm_health.SECTIONS)
        self.result['errors'] = []
        # Checked in main(): a bad pattern fails the module before anything runs.
        self.log_patterns = bm_health.level_patterns(self.params['log_error_pattern'],
                                                     self.params['log_warning_pattern'])

    # -- helpers
    def docker(self):
        if self._docker is None:
            method = self.params['docker_method']
            if method == 'sdk' or (method == 'auto' and bm_health.HAS_DOCKER_SDK):
                try:
                    self._docker = bm_health.DockerSdk()
                except Exception:
                    if method == 'sdk':
                        raise
            if self._docker is None:
                self._docker = bm_health.DockerCli(self.module, self.params['docker_cli'])
        return self._docker

    def containers(self):
        if self._containers is None:
            self._containers = bm_health.gather_containers(self.docker(),
                                                           self.params['project_name'])
        return self._containers

    def _section(self, name, func):
        try:
            self.result[name] = func()
        except Exception as exc:
            self.result[name] = dict(error=short_error(exc))
        if self.result[name].get('error'):
            self.result['errors'].append('{}: {}'.format(name, self.result[name]['error']))

    # -- sections
    def health(self):
        return bm_health.gather_health(self.params['health_url'], self.params['http_timeout'])

    def _with_db(self, func):
        try:
            conn = self._connect(self.params, 'bmops-health')
        except Exception as exc:
            raise RuntimeError(connect_error_message(self.params, exc)) from exc
        try:
            return func(conn)
        finally:
            conn.close()

    def jobs(self):
        p = self.params
        return self._with_db(lambda conn: bm_health.gather_jobs(
            conn, p['window_hours'], p['failed_jobs_limit'],
            p['jobs_summary_query'], p['failed_jobs_query']))

    def storage(self):
        p = self.params
        result = dict(targets=[], filesystems=[bm_health.filesystem_usage(path)
                                               for path in p['paths']], error=None)
        errors = ['{}: {}'.format(fs['path'], fs['error'])
                  for fs in result['filesystems'] if fs['error']]
        if p['storage_targets']:
            try:
                result['targets'] = self._with_db(
                    lambda conn: bm_health.gather_storage_targets(conn, p['storage_query']))
            except Exception as exc:
                errors.insert(0, f'storage_targets: {short_error(exc)}')
        if errors:
            result['error'] = '; '.join(errors)
        return result

    def logs(self):
        p = self.params
        return bm_health.gather_logs(self.docker(), self.containers()['items'],
                                     p['log_services'], p['window_hours'],
                                     p['log_sample_lines'], self.log_patterns)

    def redis(self):
        p = self.params
        method = p['redis_method']
        if method == 'python':
            try:
                import redis  # noqa: F401 pylint: disable=unused-import
            except ImportError:
                raise RuntimeError('redis_method=python needs the redis Python library') from None
            return bm_health.redis_ping_python(p['redis_host'], p['redis_port'],
                                               p['redis_password'], p['http_timeout'])
        return bm_health.redis_ping_docker(self.docker(), self.containers()['items'],
                                           p['redis_service'], p['redis_password'])

    def run(self):
        for name in bm_health.SECTIONS:
            if name in self.params['sections']:
                self._section(name, getattr(self, name))
        return self.result


def check_patterns(module):
    for name in ('log_error_pattern', 'log_warning_pattern'):
        try:
            bm_health.level_patterns(module.params[name])
        except re.error as exc:
            module.fail_json(msg=f'{name} is not a valid Python regular expression '
                                 f'({exc}): {module.params[name]!r}. Fix the variable that sets '
                                 'it (bm_backend_log_error_pattern / '
                                 'bm_backend_log_warning_pattern).')


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    check_patterns(module)
    needs_db = 'jobs' in module.params['sections'] or (
        'storage' in module.params['sections'] and module.params['storage_targets'])
    if needs_db:
        require_psycopg(module)
    result = HealthGatherer(module).run()
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
