# SPDX-License-Identifier: Apache-2.0
"""Settings from the environment (docs/contracts.md, "Backend image contract")."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def read_secret(env: Mapping[str, str], name: str) -> str:
    """Return NAME, or the contents of the file named by NAME_FILE.

    Like the official postgres image, setting both is an error. One trailing
    newline of the file is dropped (editors add one).
    """
    value = env.get(name)
    path = env.get(f"{name}_FILE")
    if value is not None and path:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    if value is not None:
        return value
    if not path:
        raise ConfigError(f"set {name} or {name}_FILE")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {name}_FILE {path}: {exc.strerror}") from exc
    return text[:-1] if text.endswith("\n") else text


def parse_ratio(text: str | None, default: float = 0.0) -> float:
    """JOB_FAILURE_RATIO: a number from 0.0 (never fail) to 1.0 (always fail)."""
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError as exc:
        raise ConfigError(
            f"JOB_FAILURE_RATIO must be a number from 0.0 to 1.0, not {text!r}"
        ) from exc
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"JOB_FAILURE_RATIO must be from 0.0 to 1.0, not {value}")
    return value


def parse_seconds(name: str, text: str | None, default: float) -> float:
    """A positive number of seconds."""
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number of seconds, not {text!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, not {value}")
    return value


def parse_port(name: str, text: str | None, default: int) -> int:
    if text is None or not text.strip():
        return default
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{name} must be a TCP port number, not {text!r}")
    return int(text)


@dataclasses.dataclass(frozen=True)
class Settings:
    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password: str = dataclasses.field(repr=False)
    redis_host: str
    redis_port: int
    redis_password: str = dataclasses.field(repr=False)
    log_level: str
    log_level_file: str
    job_failure_ratio: float
    job_interval_seconds: float
    job_duration_seconds: float

    @property
    def broker_url(self) -> str:
        password = quote(self.redis_password, safe="")
        return f"redis://:{password}@{self.redis_host}:{self.redis_port}/0"

    def db_kwargs(self, timeout: int = 2) -> dict:
        """psycopg.connect() keywords; statement_timeout bounds every query."""
        return {
            "host": self.db_host,
            "port": self.db_port,
            "dbname": self.db_name,
            "user": self.db_user,
            "password": self.db_password,
            "connect_timeout": timeout,
            "options": f"-c statement_timeout={timeout * 1000}",
            "application_name": "refapp",
        }


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    return Settings(
        db_host=env.get("DB_HOST", "db"),
        db_port=parse_port("DB_PORT", env.get("DB_PORT"), 5432),
        db_name=env.get("DB_NAME", "backup_mgmt"),
        db_user=env.get("DB_USER", "postgres"),
        db_password=read_secret(env, "DB_PASSWORD"),
        redis_host=env.get("REDIS_HOST", "redis"),
        redis_port=parse_port("REDIS_PORT", env.get("REDIS_PORT"), 6379),
        redis_password=read_secret(env, "REDIS_PASSWORD"),
        log_level=env.get("LOG_LEVEL", "INFO"),
        log_level_file=env.get("LOG_LEVEL_FILE", "/run/backup-mgmt/log_level"),
        job_failure_ratio=parse_ratio(env.get("JOB_FAILURE_RATIO")),
        job_interval_seconds=parse_seconds(
            "JOB_INTERVAL_SECONDS", env.get("JOB_INTERVAL_SECONDS"), 30.0
        ),
        job_duration_seconds=parse_seconds(
            "JOB_DURATION_SECONDS", env.get("JOB_DURATION_SECONDS"), 1.0
        ),
    )
