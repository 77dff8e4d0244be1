# SPDX-License-Identifier: Apache-2.0
"""Shaping of the readiness answer (pure) and running checks under a deadline."""

from __future__ import annotations

import threading
from collections.abc import Callable

OK = "ok"


def ready_response(results: dict[str, str]) -> tuple[int, dict]:
    """HTTP status and JSON body for GET /health/ready.

    *results* maps a check name to ``"ok"`` or a short error text.
    """
    failed = sorted(name for name, result in results.items() if result != OK)
    if not failed:
        return 200, {"status": "ok", "checks": dict(results)}
    return 503, {"status": "fail", "failed": failed, "checks": dict(results)}


def run_checks(checks: dict[str, Callable[[], None]], deadline: float) -> dict[str, str]:
    """Run the checks in parallel; each passes by returning, fails by raising.

    A check that has not finished after *deadline* seconds reports ``timeout``:
    its thread is left to die on its own socket timeout, the answer never waits.
    """
    results: dict[str, str] = {name: f"timeout after {deadline:g}s" for name in checks}
    lock = threading.Lock()

    def run(name: str, check: Callable[[], None]) -> None:
        try:
            check()
            outcome = OK
        except Exception as exc:  # any failure is a failed check, named in the answer
            outcome = describe(exc)
        with lock:
            results[name] = outcome

    threads = [
        threading.Thread(target=run, args=item, daemon=True, name=f"check-{item[0]}")
        for item in checks.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline))  # the checks run concurrently
    with lock:
        return dict(results)


def describe(exc: BaseException) -> str:
    """One short line: exception class and first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
