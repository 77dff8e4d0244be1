# SPDX-License-Identifier: Apache-2.0
"""The backend role: HTTP on port 8000 with the standard library."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis

from . import db, health, jobs, logs
from .config import Settings

log = logging.getLogger("refapp.backend")

PORT = 8000
CHECK_DEADLINE = 2.0  # seconds; /health/ready answers within this whatever happens


def redis_probe(settings: Settings) -> None:
    client = redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        password=settings.redis_password,
        socket_timeout=CHECK_DEADLINE,
        socket_connect_timeout=CHECK_DEADLINE,
    )
    try:
        client.ping()
    finally:
        client.close()


class Handler(BaseHTTPRequestHandler):
    server_version = "refapp"
    settings: Settings  # set on the subclass made by serve()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health/live":
            log.debug("live probe")
            self.reply(200, {"status": "ok"})
        elif path == "/health/ready":
            results = health.run_checks(
                {
                    "db": lambda: db.probe(self.settings),
                    "redis": lambda: redis_probe(self.settings),
                },
                CHECK_DEADLINE,
            )
            status, body = health.ready_response(results)
            log.debug("ready probe: %s", " ".join(f"{k}={v}" for k, v in sorted(results.items())))
            if status != 200:
                log.warning("not ready: %s", ", ".join(body["failed"]))
            self.reply(status, body)
        elif path == "/api/jobs/summary":
            try:
                counts = jobs.summary(db.job_counts(self.settings))
            except Exception as exc:  # database down: say so, keep serving
                self.reply(503, {"status": "fail", "error": health.describe(exc)})
            else:
                self.reply(200, counts)
        else:
            self.reply(404, {"status": "not found", "path": path})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple) -> None:
        """One log line instead of socketserver's traceback on stderr."""
        log.warning(
            "request from %s failed: %s", client_address[0], health.describe(sys.exc_info()[1])
        )


def prepare(settings: Settings) -> None:
    """Schema, then the audit row of this start; retried while the database starts."""
    db.wait_for_schema(settings)
    try:
        db.audit(settings, "backend", "backend.start", {"host": socket.gethostname()})
    except Exception as exc:  # not fatal: the app serves without its audit row
        log.error("cannot write the start audit row: %s", health.describe(exc))


def serve(settings: Settings) -> int:
    handler = type("BoundHandler", (Handler,), {"settings": settings})
    server = Server(("0.0.0.0", PORT), handler)  # noqa: S104 - container port

    def stop(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        # shutdown() waits for serve_forever(), which runs in this (main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logs.install_sigusr1(settings.log_level_file)
    threading.Thread(target=prepare, args=(settings,), daemon=True, name="prepare").start()
    log.info("listening on 0.0.0.0:%d", PORT)
    server.serve_forever(poll_interval=0.5)
    server.server_close()
    log.info("stopped")
    return 0
