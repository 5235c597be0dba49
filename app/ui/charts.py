"""Interval charts as inline SVG, drawn on the server: no JavaScript library on the page."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, ROW, LABEL, PAD = 560, 26, 150, 12


@dataclass(frozen=True)
class Interval:
    """One row of a chart: a point estimate and its 95% interval (None: not estimable)."""

    label: str
    value: float | None
    low: float | None
    high: float | None


def _span(rows: list[Interval], zero: bool) -> tuple[float, float]:
    """The x range that holds every finite number (and 0 when `zero`)."""
    numbers = [x for r in rows for x in (r.value, r.low, r.high) if x is not None]
    numbers = [x for x in numbers if math.isfinite(x)] + ([0.0] if zero else [])
    if not numbers:
        return 0.0, 1.0
    low, high = min(numbers), max(numbers)
    margin = (high - low) * 0.05 or abs(high) * 0.1 or 1.0
    return low - margin, high + margin


def _row(n: int, row: Interval, x: Callable[[float], float], percent: bool) -> str:
    """One row's label, interval line and point."""
    y = PAD + n * ROW + ROW / 2
    parts = [f'<text x="4" y="{y + 4:.1f}" class="lbl">{escape(row.label)}</text>']
    if row.value is None or not math.isfinite(row.value):
        parts.append(f'<text x="{LABEL}" y="{y + 4:.1f}" class="na">no data yet</text>')
        return "".join(parts)
    at = x(row.value)
    if row.low is not None and row.high is not None:
        a, b = x(row.low), x(row.high)
        parts.append(f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="ci"/>')
        for end in (a, b):
            ends = f'x1="{end:.1f}" x2="{end:.1f}" y1="{y - 5:.1f}" y2="{y + 5:.1f}"'
            parts.append(f'<line {ends} class="ci"/>')
    text = f"{row.value:+.1%}" if percent else f"{row.value:.4g}"
    parts.append(
        f'<circle cx="{at:.1f}" cy="{y:.1f}" r="4" class="pt"><title>{text}</title></circle>'
    )
    return "".join(parts)


def interval_chart(rows: list[Interval], *, zero: bool = False, percent: bool = False) -> Markup:
    """Rows of point estimates with their intervals on one shared axis; with `zero`, a line
    at 0 (lifts: an interval that crosses it is no evidence of a difference)."""
    low, high = _span(rows, zero)
    plot = WIDTH - LABEL - PAD

    def x(value: float) -> float:
        value = low if math.isnan(value) else min(max(value, low), high)  # inf: to the edge
        return LABEL + (value - low) / (high - low) * plot

    height = PAD * 2 + ROW * len(rows) + 14
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg" role="img">'
    ]
    if zero and low < 0 < high:
        at = f'x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{PAD / 2}" y2="{height - 16}"'
        parts.append(f'<line {at} class="zero"/>')
    parts.extend(_row(n, row, x, percent) for n, row in enumerate(rows))
    axis_y = height - 4
    for value in (low, (low + high) / 2, high):
        label = f"{value:+.0%}" if percent else f"{value:.3g}"
        where = f'x="{x(value):.1f}" y="{axis_y}"'
        parts.append(f'<text {where} class="axis" text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
