# SPDX-License-Identifier: Apache-2.0
"""The tool's configuration (a 0600 JSON file) and how to reach the db container."""

from __future__ import annotations

import json
import os
import re
import subprocess
import zoneinfo

from .exceptions import EXIT_USAGE, ToolError
from .utils import DAY, zone

DEFAULT_CONFIG = "/etc/bmops/backup.json"

DEFAULTS = {
    "project_name": "backup-mgmt",
    "project_dir": "/opt/backup-mgmt",
    "service": "db",
    "docker": "docker",
    # Command prefix that runs a program inside the db container.  None: `docker exec -i`
    # on the container Compose labelled as the db service (else `docker compose exec -T`).
    # Tests point it at ``docker exec -i <container>``.
    "exec_prefix": None,
    # Name of the container's env var holding the DB password.  When set, programs in
    # the container get it as PGPASSWORD (expanded inside the container, never on argv),
    # for images whose local socket auth is not ``trust``.  "" disables.
    "container_password_env": "POSTGRES_PASSWORD",
    "db_name": "backup_mgmt",
    "db_user": "postgres",
    "backup_dir": "/backup/db",
    # In a directory only root can write (created 0700); the lock file itself is 0600.
    "lock_file": "/run/bmops/bmops.lock",
    # App services a restore stops around the swap and starts again (recover starts
    # them too when a dead run left them stopped).
    "app_services": ["backend", "celery", "celery-beat"],
    "format": "directory",  # directory | custom | sql_gz
    "codec": "auto",  # auto | zstd | gzip  (directory/custom; sql_gz is always gzip)
    "zstd_level": 1,
    "keep_days": 30,
    "keep_min": 3,
    "prune_legacy": True,
    "partial_max_age_seconds": DAY,
    "min_free_bytes": 1024**3,
    "size_ratio": 1.0,  # free space needed = pg_database_size * size_ratio + min_free_bytes
    "min_backup_bytes": 512,  # smaller files are rejected as not sane
    "restore_jobs": 2,
    "dump_jobs": 2,
    # The db container (name or id) for the directory format, which moves data through
    # the container's filesystem (/proc/<pid>/root) instead of docker exec's stdio.
    # None: derived from docker compose settings.
    "container": None,
    # Work directory inside the db container for directory dumps/restores (removed after).
    "spool_dir": "/tmp",
    "scratch_prefix": "bmops_scratch",
    "textfile_dir": "/var/lib/prometheus/node-exporter",
    # The outcome of the last run and of the last scheduled run (root-only, 0700).
    "state_dir": "/var/lib/bmops/backup-state",
    # Zone of the local time in backup names (IANA name); "": the host's /etc/localtime.
    "timezone": "",
}


def load_config(path: str) -> dict:
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ToolError(f"config file {path} not found (the db_backup role writes it)",
                        EXIT_USAGE) from None
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot read config {path}: {exc}", EXIT_USAGE) from None
    if st.st_mode & 0o077:
        raise ToolError(f"config {path} must not be readable by group/others (chmod 0600)",
                        EXIT_USAGE)
    if not isinstance(data, dict):
        raise ToolError(f"config {path} must hold a JSON object", EXIT_USAGE)
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise ToolError(f"config {path}: unknown keys {', '.join(unknown)}", EXIT_USAGE)
    cfg = {**DEFAULTS, **data}
    if cfg["format"] not in ("directory", "custom", "sql_gz"):
        raise ToolError("config: format must be 'directory', 'custom' or 'sql_gz'", EXIT_USAGE)
    if cfg["codec"] not in ("auto", "zstd", "gzip"):
        raise ToolError("config: codec must be auto, zstd or gzip", EXIT_USAGE)
    for key in ("keep_days", "keep_min", "restore_jobs", "dump_jobs"):
        if not isinstance(cfg[key], int) or cfg[key] < (1 if key.endswith("_jobs") else 0):
            raise ToolError(f"config: {key} must be a non-negative integer", EXIT_USAGE)
    if cfg["exec_prefix"] is not None and not (
            isinstance(cfg["exec_prefix"], list) and cfg["exec_prefix"]):
        raise ToolError("config: exec_prefix must be a non-empty list", EXIT_USAGE)
    var = cfg["container_password_env"]
    cfg["_wrapper"] = []
    if var:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise ToolError("config: container_password_env must be a variable name", EXIT_USAGE)
        cfg["_wrapper"] = [
            "sh", "-c", f'[ -n "${{{var}:-}}" ] && export PGPASSWORD="${var}"; exec "$@"', "sh"]
    try:
        zone(cfg["timezone"])
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ToolError(f"config: timezone {cfg['timezone']!r} is not a time zone this host "
                        "knows (an IANA name such as Asia/Tokyo, or \"\" for the host's own)",
                        EXIT_USAGE) from None
    cfg["_exec"] = None
    return cfg


def find_container(cfg: dict) -> str | None:
    """The running db container: the configured one, or the one Compose labelled."""
    if cfg["container"]:
        return cfg["container"]
    try:
        res = subprocess.run(
            [cfg["docker"], "ps", "-q", "--filter",
             f"label=com.docker.compose.project={cfg['project_name']}", "--filter",
             f"label=com.docker.compose.service={cfg['service']}"],
            capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    ids = res.stdout.split()
    if res.returncode == 0 and len(ids) == 1:
        cfg["container"] = ids[0]
        return ids[0]
    return None


def exec_prefix(cfg: dict) -> list:
    """Command prefix that runs a program in the db container (resolved once).

    Default: `docker exec -i <container>` for the container Compose labelled as the
    db service (the Compose CLI costs a few hundred ms per call); when it cannot be
    found, `docker compose ... exec -T <service>`, which says why.
    """
    if cfg["_exec"] is None:
        base = cfg["exec_prefix"]
        if base is None:
            cid = find_container(cfg)
            base = ([cfg["docker"], "exec", "-i", cid] if cid else
                    [cfg["docker"], "compose", "-p", cfg["project_name"],
                     "--project-directory", cfg["project_dir"], "exec", "-T", cfg["service"]])
        cfg["_exec"] = base + cfg["_wrapper"]
    return cfg["_exec"]
