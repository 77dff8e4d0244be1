# SPDX-License-Identifier: Apache-2.0
"""A changed setting recreates only the services it concerns (Compose config hash).

Runs last: it changes the stack and puts it back. docker_engine is skipped by
tag (not under test here).
"""

from __future__ import annotations

import json

SKIP_ENGINE = ["--skip-tags", "docker_engine_install,docker_engine_configure,docker_engine_run"]


def _ids(host) -> dict[str, str]:
    out = host.check_output(
        "docker ps -q --filter label=com.docker.compose.project=backup-mgmt | xargs docker inspect"
        " -f '{{index .Config.Labels \"com.docker.compose.service\"}} {{.Id}}'"
    )
    return dict(line.split() for line in out.splitlines())


def test_backend_env_change_recreates_only_app_services(host, run_site):
    before = _ids(host)
    changed_env = json.dumps({"app_stack_backend_env": {"JOB_INTERVAL_SECONDS": "31"}})
    try:
        rc, _, raw = run_site(*SKIP_ENGINE, "-e", changed_env)
        assert rc == 0, raw[-3000:]
        after = _ids(host)
        assert after["db"] == before["db"]
        assert after["redis"] == before["redis"]
        for service in ("backend", "celery", "celery-beat"):
            assert after[service] != before[service], service
    finally:
        rc, _, raw = run_site(*SKIP_ENGINE)
        assert rc == 0, raw[-3000:]
