# SPDX-License-Identifier: Apache-2.0
"""PostgreSQL: schema, audit log, job rows, readiness probe."""

from __future__ import annotations

import json
import logging
import time

import psycopg

from .config import Settings

log = logging.getLogger("refapp.db")

# Any constant shared by every process of the app: backend and worker may start
# together, and concurrent CREATE TABLE IF NOT EXISTS can still collide.
SCHEMA_LOCK = 0x626D6F7073  # "bmops"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS backup_jobs (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        status text NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'success', 'failed')),
        started_at timestamptz,
        finished_at timestamptz,
        bytes bigint,
        error text
    )""",
    "CREATE INDEX IF NOT EXISTS backup_jobs_started_at_idx ON backup_jobs (started_at)",
    """CREATE TABLE IF NOT EXISTS storage_targets (
        name text PRIMARY KEY,
        path text NOT NULL,
        capacity_bytes bigint NOT NULL,
        used_bytes bigint NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS audit_logs (
        id bigserial PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now(),
        actor text NOT NULL,
        action text NOT NULL,
        detail jsonb NOT NULL DEFAULT '{}'::jsonb
    )""",
    "CREATE INDEX IF NOT EXISTS audit_logs_created_at_idx ON audit_logs (created_at)",
]

SEED_TARGETS = [
    ("primary-nas", "/mnt/nas/backups", 4 * 1024**4, 1200 * 1024**3),
    ("offsite-s3", "s3://backup-mgmt-offsite", 10 * 1024**4, 3100 * 1024**3),
]


def connect(settings: Settings, timeout: int = 2) -> psycopg.Connection:
    return psycopg.connect(**settings.db_kwargs(timeout))


def ensure_schema(settings: Settings) -> None:
    """Create the tables when missing and seed storage_targets; idempotent."""
    with connect(settings, timeout=5) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for statement in SCHEMA:
            conn.execute(statement)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO storage_targets (name, path, capacity_bytes, used_bytes)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                SEED_TARGETS,
            )


def wait_for_schema(settings: Settings, max_pause: float = 5.0) -> None:
    """ensure_schema() until it works: the database may start after the app."""
    attempt, pause = 1, 0.5
    while True:
        try:
            ensure_schema(settings)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()
            log.warning("database not ready (attempt %d): %s", attempt, first[0] if first else exc)
            time.sleep(pause)
            attempt, pause = attempt + 1, min(pause * 2, max_pause)
        else:
            log.info("schema ready")
            return


def audit(settings: Settings, actor: str, action: str, detail: dict) -> None:
    with connect(settings) as conn:
        conn.execute(
            "INSERT INTO audit_logs (actor, action, detail) VALUES (%s, %s, %s::jsonb)",
            (actor, action, json.dumps(detail)),
        )


def probe(settings: Settings) -> None:
    """Readiness: connect and run a query, or raise."""
    with connect(settings) as conn:
        conn.execute("SELECT 1").fetchone()


def job_counts(settings: Settings) -> list[tuple[str, int]]:
    with connect(settings) as conn:
        return conn.execute("SELECT status, count(*) FROM backup_jobs GROUP BY status").fetchall()


def start_job(settings: Settings, name: str) -> int:
    with connect(settings, timeout=5) as conn:
        row = conn.execute(
            "INSERT INTO backup_jobs (name, status, started_at) VALUES (%s, 'running', now())"
            " RETURNING id",
            (name,),
        ).fetchone()
        return row[0]


def finish_job(settings: Settings, job_id: int, status: str, size: int, error: str | None) -> None:
    with connect(settings, timeout=5) as conn:
        conn.execute(
            "UPDATE backup_jobs SET status = %s, finished_at = now(), bytes = %s, error = %s"
            " WHERE id = %s",
            (status, size, error, job_id),
        )
