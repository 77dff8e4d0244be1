# SPDX-License-Identifier: Apache-2.0
"""Entry point: ``refapp backend|worker|beat`` and ``refapp healthcheck [ROLE]``."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

ROLES = ("backend", "worker", "beat")
USAGE = "usage: refapp backend|worker|beat | refapp healthcheck [backend|worker|beat]"
# Which role this container runs, for a HEALTHCHECK that does not name one.
ROLE_FILE = Path(os.environ.get("REFAPP_HEARTBEAT_DIR", "/tmp/refapp")) / "role"
HEARTBEAT_MAX_AGE = 30.0  # seconds: several missed heartbeats (one every 5 s)


def healthcheck(role: str | None) -> int:
    """Exit status 0 when the role is healthy: live endpoint or fresh heartbeat."""
    if role is None:
        try:
            role = ROLE_FILE.read_text(encoding="utf-8").strip()
        except OSError:
            print("unhealthy: role not recorded yet (still starting?)")
            return 1
    if role == "backend":
        try:
            with urllib.request.urlopen("http://127.0.0.1:8000/health/live", timeout=3) as r:
                ok = r.status == 200
        except OSError as exc:
            print(f"unhealthy: /health/live: {exc}")
            return 1
        return 0 if ok else 1
    if role in ("worker", "beat"):
        beat = ROLE_FILE.parent / role
        try:
            age = time.time() - beat.stat().st_mtime
        except OSError:
            print(f"unhealthy: no heartbeat file {beat}")
            return 1
        if age > HEARTBEAT_MAX_AGE:
            print(f"unhealthy: last {role} heartbeat {age:.0f}s ago")
            return 1
        return 0
    print(USAGE)
    return 2


def run(role: str) -> int:
    from . import config, logs

    logs.setup(role, os.environ.get("LOG_LEVEL", "INFO"))
    try:
        settings = config.load()
    except config.ConfigError as exc:
        logs.log.error("configuration: %s", exc)
        return 2
    ROLE_FILE.parent.mkdir(parents=True, exist_ok=True)
    ROLE_FILE.write_text(role + "\n", encoding="utf-8")
    log = logs.log
    level = logs.logging.getLevelName(logs.logging.getLogger().level)
    log.info("starting %s (log level %s)", role, level)
    if role == "backend":
        from . import web

        return web.serve(settings)
    from . import tasks

    if role == "worker":
        tasks.run_worker()
    else:
        tasks.run_beat()
    log.info("%s stopped", role)
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "healthcheck" and len(argv) <= 2:
        return healthcheck(argv[1] if len(argv) == 2 else None)
    if len(argv) == 1 and argv[0] in ROLES:
        return run(argv[0])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
