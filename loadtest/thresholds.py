"""Pass/fail rules of a load test run: failure ratio and p99 of the end-to-end task latency.

Locust keeps each entry's response times as a histogram ``{rounded milliseconds: count}``;
the TASK entries (one per task type and follow mode) are merged before taking the p99, so the
threshold applies to all tasks together, not to the worst small entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    total: Counter[int] = Counter()
    for histogram in histograms:
        total.update(histogram)
    return dict(total)


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The smallest recorded value with at least ``fraction`` of the samples at or below it
    (Locust's own definition); None without samples."""
    count = sum(histogram.values())
    if count == 0:
        return None
    wanted = fraction * count
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= wanted:
            return float(value)
    return float(max(histogram))


@dataclass(frozen=True)
class Verdict:
    ok: bool
    lines: list[str]


def judge(
    *,
    requests: int,
    failures: int,
    task_latency: Mapping[int, int],
    max_fail_ratio: float | None,
    max_p99_ms: float | None,
) -> Verdict:
    ratio = failures / requests if requests else 0.0
    p99 = percentile(task_latency, 0.99)
    lines = [
        f"requests {requests}, failures {failures} (ratio {ratio:.4f})",
        f"task end-to-end p99: {'n/a' if p99 is None else f'{p99:.0f} ms'}",
    ]
    ok = True
    if requests == 0:
        ok = False
        lines.append("FAIL: no request was made")
    if max_fail_ratio is not None and ratio > max_fail_ratio:
        ok = False
        lines.append(f"FAIL: failure ratio {ratio:.4f} > {max_fail_ratio}")
    if max_p99_ms is not None:
        if p99 is None:
            ok = False
            lines.append("FAIL: no task finished, so there is no p99")
        elif p99 > max_p99_ms:
            ok = False
            lines.append(f"FAIL: task p99 {p99:.0f} ms > {max_p99_ms:g} ms")
    if ok:
        lines.append("PASS")
    return Verdict(ok, lines)
