"""Pure helpers of the benchmark reports: percentiles, ratios, Markdown tables.

No I/O here, so tests can check the numbers a report prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be within [0, 1]")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(value: float, reference: float) -> float:
    """``value / reference``; NaN when either is missing or the reference is zero."""
    if math.isnan(value) or math.isnan(reference) or reference == 0:
        return math.nan
    return value / reference


def fmt_ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def fmt_number(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


@dataclass(frozen=True)
class Row:
    """One line of a comparison: a metric, both systems' values, and whether higher is better."""

    metric: str
    ours: float
    anchor: float
    higher_is_better: bool
    digits: int = 0
    target: str = ""

    @property
    def ratio(self) -> float:
        return ratio(self.ours, self.anchor)

    @property
    def better(self) -> bool | None:
        if math.isnan(self.ratio):
            return None
        return self.ratio >= 1.0 if self.higher_is_better else self.ratio <= 1.0


def markdown_table(
    rows: Sequence[Row], *, ours: str = "kafka-tasks", anchor: str = "Celery"
) -> str:
    """A Markdown table with each figure's ratio to the anchor (ours / anchor)."""
    lines = [
        f"| metric | {ours} | {anchor} | ratio {ours} / {anchor} | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        arrow = "higher is better" if row.higher_is_better else "lower is better"
        lines.append(
            f"| {row.metric} ({arrow}) | {fmt_number(row.ours, row.digits)} | "
            f"{fmt_number(row.anchor, row.digits)} | {fmt_ratio(row.ratio)} | {row.target} |"
        )
    return "\n".join(lines)
