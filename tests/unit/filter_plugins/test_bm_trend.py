# SPDX-License-Identifier: Apache-2.0
"""filter_plugins/bm_trend.py: sparklines and the forecast."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET  # our own SVG, not untrusted input

import bm_trend

SVG = "{http://www.w3.org/2000/svg}"


def days_of(values, start="2026-11-01T00:00:00Z"):
    t0 = datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))
    return [{"at": (t0 + datetime.timedelta(days=i)).isoformat(), "value": v}
            for i, v in enumerate(values)]


def test_sparkline_is_a_self_contained_svg():
    svg = bm_trend.sparkline([70, 71, None, 73, 74, 75], label="storage <%>")
    root = ET.fromstring(svg)  # noqa: S314
    assert root.tag == f"{SVG}svg" and root.get("width") == "120"
    assert "script" not in svg and "href" not in svg
    assert root.find(f"{SVG}title").text == "storage <%>"
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2  # the gap splits the line
    assert [len(line.get("points").split()) for line in lines] == [2, 3]
    # the highest value is at the top, the lowest at the bottom
    ys = [float(p.split(",")[1]) for line in lines for p in line.get("points").split()]
    assert ys[0] == max(ys) and ys[-1] == min(ys)
    assert root.find(f"{SVG}circle") is not None


def test_sparkline_needs_two_numbers():
    assert bm_trend.sparkline([]) == ""
    assert bm_trend.sparkline([5, None, "x"]) == ""
    flat = ET.fromstring(bm_trend.sparkline([3, 3, 3]))  # noqa: S314
    assert len(flat.find(f"{SVG}polyline").get("points").split()) == 3


def test_forecast_says_when_storage_crosses_80_percent():
    # +1 point a day, 71 today: 80 % in 9 days
    result = bm_trend.forecast(days_of(list(range(52, 72))), threshold=80)
    assert result["days"] == 9, result
    assert result["r2"] == 1.0 and result["slope_per_day"] == 1.0
    assert result["at"].startswith("2026-11-29")


def test_forecast_says_nothing_when_flat_noisy_falling_or_over():
    assert bm_trend.forecast(days_of([60] * 20), threshold=80) is None
    noisy = [60, 75, 58, 77, 61, 74, 59, 76, 62, 73, 60, 78]
    assert bm_trend.forecast(days_of(noisy), threshold=80) is None
    assert bm_trend.forecast(days_of(list(range(79, 59, -1))), threshold=80) is None
    assert bm_trend.forecast(days_of(list(range(70, 90))), threshold=80) is None
    assert bm_trend.forecast(days_of([70, 71, 72]), threshold=80) is None  # too few
    # far beyond the horizon: nothing worth saying yet
    slow = [50 + i * 0.01 for i in range(30)]
    assert bm_trend.forecast(days_of(slow), threshold=80) is None
