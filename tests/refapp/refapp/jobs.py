# SPDX-License-Identifier: Apache-2.0
"""Pure decisions of the simulated backup job."""

from __future__ import annotations

import random

FAILURE_TEXT = "simulated failure: storage target did not answer"


def should_fail(ratio: float, draw: float) -> bool:
    """A draw from [0, 1) fails when below *ratio*: 0.0 never fails, 1.0 always does."""
    return draw < ratio


def outcome(ratio: float, rng: random.Random | None = None) -> tuple[str, int, str | None]:
    """(status, bytes, error) of one job."""
    rng = rng or random.Random()
    if should_fail(ratio, rng.random()):
        return "failed", 0, FAILURE_TEXT
    return "success", rng.randint(1_000_000, 50_000_000), None


def summary(rows: list[tuple[str, int]]) -> dict[str, int]:
    """Counts by status for GET /api/jobs/summary, every status present."""
    counts = dict.fromkeys(("queued", "running", "success", "failed"), 0)
    for status, count in rows:
        counts[status] = count
    return counts
