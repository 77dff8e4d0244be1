# SPDX-License-Identifier: Apache-2.0
"""Trends of the check figures for people: sparklines and a forecast, pure functions.

``bm_sparkline``: the last runs of one figure as an inline SVG (no script, no
external asset: it shows in a mail client). ``bm_forecast``: when a straight line
through the history fits well enough, in how many days it reaches a threshold
("storage reaches 80 % in about 9 days"); otherwise nothing is said.
"""

from __future__ import annotations

import datetime
import math
from html import escape


def _epoch(value) -> float:
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().replace("Z", "+00:00")
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def sparkline(values, width: int = 120, height: int = 24, colour: str = "#0969da",
              label: str = "") -> str:
    """VALUES (oldest first; None is a gap) as an SVG polyline with its last point marked.
    Fewer than two numbers: an empty string."""
    nums = [float(v) if isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(v) else None for v in values or []]
    known = [v for v in nums if v is not None]
    if len(known) < 2:
        return ""
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    pad = 2.0
    step = (width - 2 * pad) / (len(nums) - 1)
    segments, current, last = [], [], None
    for i, v in enumerate(nums):
        if v is None:
            if current:
                segments.append(current)
            current = []
            continue
        x = pad + i * step
        y = pad + (height - 2 * pad) * (1 - (v - low) / span)
        current.append(f"{x:.1f},{y:.1f}")
        last = (x, y)
    if current:
        segments.append(current)
    lines = "".join(
        f'<polyline fill="none" stroke="{escape(colour)}" stroke-width="1.5" '
        f'points="{" ".join(seg)}"/>' for seg in segments if len(seg) > 1)
    dot = f'<circle cx="{last[0]:.1f}" cy="{last[1]:.1f}" r="2" fill="{escape(colour)}"/>'
    title = f"<title>{escape(label)}</title>" if label else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">{title}{lines}{dot}</svg>')


def forecast(points, threshold: float, min_points: int = 5, min_r2: float = 0.8,
             horizon_days: float = 90.0):
    """POINTS: [{at: time, value: number}] or [[time, value]] (any order). A least-squares
    line through them; when it rises, fits (r² >= MIN_R2), the last value is still under
    THRESHOLD and the crossing is within HORIZON_DAYS: {days, slope_per_day, r2, at}
    (days rounded up); otherwise None."""
    pairs = []
    for p in points or []:
        at, value = (p.get("at"), p.get("value")) if isinstance(p, dict) else p
        if value is None or at is None:
            continue
        pairs.append((_epoch(at) / 86400.0, float(value)))
    pairs.sort()
    if len(pairs) < max(min_points, 2):
        return None
    n = len(pairs)
    mx = sum(x for x, _ in pairs) / n
    my = sum(y for _, y in pairs) / n
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    syy = sum((y - my) ** 2 for _, y in pairs)
    if sxx == 0 or syy == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in pairs) / sxx
    r2 = slope * slope * sxx / syy
    last_x, last_y = pairs[-1]
    if slope <= 0 or r2 < min_r2 or last_y >= threshold:
        return None
    fitted_now = my + slope * (last_x - mx)
    days = (threshold - fitted_now) / slope
    if days <= 0 or days > horizon_days:
        return None
    crossing = datetime.datetime.fromtimestamp((last_x + days) * 86400.0, datetime.UTC)
    # rounded up, after the float noise of epoch arithmetic (4.0000001 days is 4)
    return {"days": math.ceil(round(days, 6)), "slope_per_day": round(slope, 4), "r2": round(r2, 4),
            "at": crossing.strftime("%Y-%m-%dT%H:%M:%SZ")}


# the storage checks whose figures bm_history_append keeps as storage:<item>
# (filter_plugins/bm_report.py; plugin files cannot import each other)
STORAGE_METRICS = ("storage_used_percent", "filesystem_used_percent")


def series(history, key):
    """[{at, value}] of the figure KEY over HISTORY (``[{at, figures}]``, as
    bm_history_append keeps it; value None where it was not measured), oldest first."""
    return [{"at": h.get("at"), "value": (h.get("figures") or {}).get(key)}
            for h in history or [] if isinstance(h, dict)]


def storage_forecasts(checks, history, threshold=None, min_points: int = 5,
                      min_r2: float = 0.8, horizon_days: float = 90.0):
    """For each storage check of CHECKS (this run), the forecast of its figure in
    HISTORY (``[{at, figures: {"storage:<item>": percent}}]``, this run included):
    [{target, threshold, days, count, slope_per_day, r2, at}] for those that will
    cross THRESHOLD (default: the check's own limit) within HORIZON_DAYS."""
    out = []
    for check in checks or []:
        if check.get("metric") not in STORAGE_METRICS or check.get("value") is None:
            continue
        points = [p for p in series(history, f"storage:{check.get('item')}")
                  if isinstance(p["value"], int | float)]
        limit = float(check["limit"] if threshold in (None, "") else threshold)
        found = forecast(points, limit, min_points=int(min_points), min_r2=float(min_r2),
                         horizon_days=float(horizon_days))
        if found:
            shown = int(limit) if limit.is_integer() else limit
            out.append({"target": check.get("item"), "threshold": shown,
                        "count": len(points), **found})
    return out


class FilterModule:
    def filters(self):
        return {"bm_sparkline": sparkline, "bm_forecast": forecast, "bm_series": series,
                "bm_storage_forecasts": storage_forecasts}
