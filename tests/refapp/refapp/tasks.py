# SPDX-License-Identifier: Apache-2.0
"""The worker and beat roles: Celery on Redis, one periodic backup job.

Worker health: a consumer step touches HEARTBEAT_DIR/worker every few seconds
from the worker's event loop, so the file ages when the worker is stuck or lost
its broker. Beat health: the scheduler touches HEARTBEAT_DIR/beat on each tick.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from pathlib import Path

from celery import Celery, bootsteps, signals
from celery.beat import PersistentScheduler, Service

from . import config, db, jobs, logs

log = logging.getLogger("refapp.worker")

HEARTBEAT_DIR = Path(os.environ.get("REFAPP_HEARTBEAT_DIR", "/tmp/refapp"))
HEARTBEAT_SECONDS = 5.0

settings = config.load()

app = Celery("refapp", broker=settings.broker_url, include=[__name__])
app.conf.update(
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    broker_connection_retry_on_startup=True,
    beat_max_loop_interval=HEARTBEAT_SECONDS,
    beat_schedule_filename=str(HEARTBEAT_DIR / "celerybeat-schedule"),
    beat_schedule={
        "run-backup-job": {
            "task": f"{__name__}.run_backup_job",
            "schedule": settings.job_interval_seconds,
        },
    },
    timezone="UTC",
)


def touch(role: str) -> None:
    HEARTBEAT_DIR.mkdir(parents=True, exist_ok=True)
    (HEARTBEAT_DIR / role).touch()
    log.debug("%s heartbeat", role)


@signals.setup_logging.connect
def keep_our_logging(**_kwargs: object) -> None:
    """Connected receiver: Celery leaves logging to logs.setup()."""


class Heartbeat(bootsteps.StartStopStep):
    """Touch the worker heartbeat from the consumer's timer while it is connected."""

    def __init__(self, parent: object, **kwargs: object) -> None:
        super().__init__(parent, **kwargs)
        self.tref = None

    def start(self, c: object) -> None:
        touch("worker")
        self.tref = c.timer.call_repeatedly(HEARTBEAT_SECONDS, touch, ("worker",))

    def stop(self, c: object) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


app.steps["consumer"].add(Heartbeat)


class HeartbeatScheduler(PersistentScheduler):
    def tick(self, *args: object, **kwargs: object) -> float:
        touch("beat")
        return super().tick(*args, **kwargs)


@signals.worker_ready.connect
def on_worker_ready(**_kwargs: object) -> None:
    # Celery's own SIGUSR1 handler dumps stack traces; ours switches the level.
    try:
        logs.install_sigusr1(settings.log_level_file)
    except ValueError:  # not in the main thread: keep Celery's handler
        log.warning("SIGUSR1 log level switch not available in this worker")
    try:
        schema_once()
    except Exception as exc:  # the first job retries; the worker keeps consuming
        log.warning("schema not created yet: %s", exc)
    log.info("worker ready on %s", socket.gethostname())


@signals.beat_init.connect
def on_beat_init(**_kwargs: object) -> None:
    logs.install_sigusr1(settings.log_level_file)
    log.info("beat scheduling run_backup_job every %gs", settings.job_interval_seconds)


_schema = {"ready": False}


def schema_once() -> None:
    if not _schema["ready"]:
        db.ensure_schema(settings)
        _schema["ready"] = True


@app.task(name=f"{__name__}.run_backup_job")
def run_backup_job() -> dict:
    """Insert a running row, work a little, finish it as success or failed."""
    schema_once()
    name = f"scheduled-backup-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    job_id = db.start_job(settings, name)
    log.info("backup job %d started: %s", job_id, name)
    time.sleep(settings.job_duration_seconds)
    status, size, error = jobs.outcome(settings.job_failure_ratio)
    db.finish_job(settings, job_id, status, size, error)
    if status == "failed":
        log.error("backup job %d failed: %s", job_id, error)
    else:
        log.info("backup job %d succeeded: %d bytes", job_id, size)
    return {"id": job_id, "status": status}


def run_worker() -> None:
    # -q: no banner (it is not in the log format); solo pool: one process, so
    # SIGUSR1 and the heartbeat concern the process that runs the jobs.
    # Celery handles SIGTERM itself (warm shutdown: the running job finishes).
    app.start(argv=["-q", "worker", "--pool=solo"])


def run_beat() -> None:
    """The beat service without `celery beat`'s multi-line banner."""
    app.loader.init_worker()
    app.finalize()
    service = Service(app=app, scheduler_cls=HeartbeatScheduler)  # ignores beat_scheduler

    def stop(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        service.sync()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.start()
