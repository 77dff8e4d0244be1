# SPDX-License-Identifier: Apache-2.0
"""One plain line per event on stdout, and the SIGUSR1 level switch.

Format (UTC, level as a word)::

    2026-11-28T12:00:00Z INFO backend listening on 0.0.0.0:8000

Tracebacks and other multi-line messages are folded into the same line with
`` | `` so that ``docker logs`` keeps one event per line.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path

LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}

log = logging.getLogger("refapp")


def parse_level(text: str | None) -> int | None:
    """Level number for a level word (any case, surrounding blanks ignored), else None."""
    if text is None:
        return None
    return LEVELS.get(text.strip().upper())


class LineFormatter(logging.Formatter):
    converter = time.gmtime

    def __init__(self, component: str) -> None:
        super().__init__(
            fmt=f"%(asctime)s %(levelname)s {component} %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%SZ",
        )

    def format(self, record: logging.LogRecord) -> str:
        return " | ".join(line for line in super().format(record).splitlines() if line.strip())


def setup(component: str, level_word: str | None) -> None:
    """Send every logger (ours, Celery's, kombu's) to stdout in the line format."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LineFormatter(component))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Python warnings and uncaught errors as log lines too, not raw stderr text.
    logging.captureWarnings(True)
    sys.excepthook = lambda *info: log.critical("uncaught error", exc_info=info)
    threading.excepthook = lambda args: log.error(
        "uncaught error in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
    level = parse_level(level_word)
    root.setLevel(level or logging.INFO)
    if level is None:
        log.warning("unknown LOG_LEVEL %r, using INFO", level_word)


def announce(level: int, message: str, *args: object) -> None:
    """Log whatever the current level: what SIGUSR1 did must always show."""
    record = log.makeRecord(log.name, level, __file__, 0, message, args, None)
    for handler in logging.getLogger().handlers:
        handler.handle(record)


def reload_level(path: str) -> None:
    """Set the level from the file at *path*; keep the old one when it is unusable."""
    root = logging.getLogger()
    old = logging.getLevelName(root.level)
    try:
        word = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        announce(
            logging.WARNING,
            "cannot read log level file %s (%s), keeping %s",
            path,
            exc.strerror,
            old,
        )
        return
    level = parse_level(word)
    if level is None:
        announce(logging.WARNING, "unknown log level %r in %s, keeping %s", word.strip(), path, old)
        return
    root.setLevel(level)
    new = logging.getLevelName(level)
    if new != old:
        announce(logging.INFO, "log level changed to %s", new)
    else:
        announce(logging.INFO, "log level unchanged: %s", new)


def install_sigusr1(path: str) -> None:
    """SIGUSR1 re-reads the level file (must be called from the main thread)."""
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: reload_level(path))
