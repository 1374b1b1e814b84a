"""Turn benchmark summaries into the Markdown table and the PNG plot under build/bench/."""

from __future__ import annotations

import math
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stats import Row, fmt_number, fmt_ratio, markdown_table, ratio

OURS = "kafka-tasks"
ANCHOR = "celery"


def _find(summaries: Sequence[dict[str, Any]], system: str, prefix: str) -> dict[str, Any]:
    """The run of ``system`` whose scenario starts with ``prefix``; with several rounds, the
    median of each number over the rounds (a shared machine makes single runs noisy)."""
    runs = [s for s in summaries if s["system"] == system and s["scenario"].startswith(prefix)]
    if len(runs) <= 1:
        return runs[0] if runs else {}
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = statistics.median(float(run[key]) for run in runs)
    return merged


def _get(summary: dict[str, Any], key: str) -> float:
    value = summary.get(key)
    return float(value) if value is not None else math.nan


def _refused(summary: dict[str, Any]) -> str:
    refused = summary.get("refused_by_status") or {}
    if not refused:
        return ""
    parts = ", ".join(
        f"{count} x {'no answer' if status == '0' else status}" for status, count in refused.items()
    )
    return f" (refused: {parts})"


def comparison_rows(
    summaries: Sequence[dict[str, Any]], *, offered_rate: float, targets: bool = True
) -> list[Row]:
    """The rows of the headline table, in the issue's order."""
    rows: list[Row] = []
    ours = _find(summaries, OURS, "burst")
    anchor = _find(summaries, ANCHOR, "burst")
    rows.append(
        Row(
            "burst noop: submit rate, tasks/s",
            _get(ours, "submit_rate"),
            _get(anchor, "submit_rate"),
            True,
            target="≥ 2,000/s" if targets else "",
        )
    )
    rows.append(
        Row(
            "burst noop: completion rate, tasks/s",
            _get(ours, "completion_rate"),
            _get(anchor, "completion_rate"),
            True,
            target="≥ 3x Celery" if targets else "",
        )
    )
    for prefix, label in (("open loop noop", "noop"), ("open loop sleep", "sleep 50 ms")):
        ours = _find(summaries, OURS, prefix)
        anchor = _find(summaries, ANCHOR, prefix)
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            target = "≤ 100 ms" if targets and key == "p99_ms" and label == "noop" else ""
            rows.append(
                Row(
                    f"{label} @{offered_rate:g}/s: {key[:3]} end-to-end, ms",
                    _get(ours, key),
                    _get(anchor, key),
                    False,
                    digits=1,
                    target=target,
                )
            )
        rows.append(
            Row(
                f"{label} @{offered_rate:g}/s: failures",
                _get(ours, "failures"),
                _get(anchor, "failures"),
                False,
            )
        )
    return rows


@dataclass(frozen=True)
class Target:
    """One of issue 12's targets: both systems' figures, their ratio, and whether it is met."""

    name: str
    ours: float
    anchor: float
    value: float
    """The figure the requirement is about (a ratio, or a count)."""
    requirement: str
    met: bool | None


def _cpu_total(summary: dict[str, Any]) -> float:
    cpu = summary.get("cpu_ms_per_task") or {}
    return sum(v for k, v in cpu.items() if k != "driver") if cpu else math.nan


def targets(summaries: Sequence[dict[str, Any]], *, offered_rate: float) -> list[Target]:
    """Issue 12's five targets, each as measured side by side in this run."""
    out: list[Target] = []

    def add(
        name: str,
        ours: float,
        anchor: float,
        value: float,
        at_least: float | None,
        at_most: float | None,
        requirement: str,
    ) -> None:
        met = None
        if not math.isnan(value):
            met = (at_least is None or value >= at_least) and (at_most is None or value <= at_most)
        out.append(Target(name, ours, anchor, value, requirement, met))

    ours, anchor = _find(summaries, OURS, "seed"), _find(summaries, ANCHOR, "seed")
    if ours and anchor:
        done = (_get(ours, "completed"), _get(anchor, "completed"))
        add("seed: tasks completed in 90 s", *done, ratio(*done), 1.0, None, "≥ 1.0x")
        failures = _get(ours, "failures")
        add(
            "seed: failures (kafka-tasks)",
            failures,
            _get(anchor, "failures"),
            failures,
            None,
            0,
            "= 0",
        )
        p99 = (_get(ours, "p99_ms"), _get(anchor, "p99_ms"))
        add("seed: end-to-end p99, ms", *p99, ratio(*p99), None, 1.0, "≤ 1.0x")
    ours = _find(summaries, OURS, "open loop noop")
    anchor = _find(summaries, ANCHOR, "open loop noop")
    if ours and anchor:
        p99 = (_get(ours, "p99_ms"), _get(anchor, "p99_ms"))
        add(f"noop @{offered_rate:g}/s: p99, ms", *p99, ratio(*p99), None, 1.0, "≤ 1.0x")
        cpu = (_cpu_total(ours), _cpu_total(anchor))
        add(f"noop @{offered_rate:g}/s: CPU per task, ms", *cpu, ratio(*cpu), None, 1.0, "≤ 1.0x")
    ours = _find(summaries, OURS, "open loop sleep")
    anchor = _find(summaries, ANCHOR, "open loop sleep")
    if ours and anchor:
        p99 = (_get(ours, "p99_ms"), _get(anchor, "p99_ms"))
        add(f"sleep 50 ms @{offered_rate:g}/s: p99, ms", *p99, ratio(*p99), None, 1.1, "≤ 1.1x")
    ours, anchor = _find(summaries, OURS, "burst"), _find(summaries, ANCHOR, "burst")
    if ours and anchor:
        rates = (_get(ours, "completion_rate"), _get(anchor, "completion_rate"))
        add("burst: completion rate, tasks/s", *rates, ratio(*rates), 2.0, None, "≥ 2.0x")
    ours, anchor = _find(summaries, OURS, "fan-out"), _find(summaries, ANCHOR, "fan-out")
    if ours and anchor:
        # kafka-tasks: until every task is done; the anchor: until every task is submitted.
        seconds = (_get(ours, "complete_seconds"), _get(anchor, "submit_seconds"))
        add(
            "fan-out: s to submit+complete (ours) vs submit (anchor)",
            *seconds,
            ratio(seconds[1], seconds[0]),
            5.0,
            None,
            "anchor/ours ≥ 5.0x",
        )
    return out


def targets_table(rows: Sequence[Target]) -> str:
    lines = [
        "| target | kafka-tasks | Celery | measured | required | met |",
        "| --- | ---: | ---: | ---: | --- | :---: |",
    ]
    for row in rows:
        digits = 1 if "ms" in row.name or "s to" in row.name else 0
        measured = fmt_number(row.value) if "failures" in row.name else fmt_ratio(row.value)
        met = "—" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.name} | {fmt_number(row.ours, digits)} | {fmt_number(row.anchor, digits)} "
            f"| {measured} | {row.requirement} | {met} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpus = _cpu_model()
    memory = _memory_gib()
    system = f"{platform.system()} {platform.release()}"
    return f"{cpus}, {memory}, {system}, Python {platform.python_version()}"


def _cpu_model() -> str:
    import os

    count = os.cpu_count() or 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{count} x {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return f"{count} CPUs"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return "unknown RAM"


def markdown(
    summaries: Sequence[dict[str, Any]],
    *,
    ceiling: float,
    offered_rate: float,
    setup: dict[str, Any],
    command: str,
) -> str:
    rows = comparison_rows(summaries, offered_rate=offered_rate, targets=False)
    ours_submit = _get(_find(summaries, OURS, "burst"), "submit_rate")
    lines = [
        "# kafka-tasks vs FastAPI + Celery + Redis",
        "",
        f"Machine: {machine()}. Everything (Kafka, Redis, APIs, workers, driver) on it.",
        f"Command: `{command}`",
        "",
        "## Targets (issue 12), each side by side in this run",
        "",
        targets_table(targets(summaries, offered_rate=offered_rate)),
        "",
        "## All figures",
        "",
        markdown_table(rows, ours=OURS, anchor="Celery"),
        "",
        f"Driver ceiling against a trivial endpoint in the same run: "
        f"**{fmt_number(ceiling)} requests/s** "
        f"(kafka-tasks' submit rate is {fmt_ratio(ratio(ours_submit, ceiling))} of it).",
        "",
        "Setup: " + ", ".join(f"{key} = {value}" for key, value in setup.items()),
        "",
        "| system | scenario | accepted | completed | failures | never finished | "
        "submit/s | completed/s | p50 ms | p95 ms | p99 ms | max ms | API spot checks |",
        "| --- | --- |" + " ---: |" * 11,
    ]
    for s in summaries:
        if s["scenario"].startswith("seed"):
            continue  # Locust's own figures, below
        lines.append(
            f"| {s['system']} | {s['scenario']} | {s['accepted']} | {s['completed']} | "
            f"{s['failures']}{_refused(s)} | {s['never_finished']} | "
            f"{fmt_number(s['submit_rate'])} | "
            f"{fmt_number(s['completion_rate'])} | {fmt_number(s['p50_ms'], 1)} | "
            f"{fmt_number(s['p95_ms'], 1)} | {fmt_number(s['p99_ms'], 1)} | "
            f"{fmt_number(s['max_ms'], 1)} | "
            f"{s['api_checked'] - s['api_mismatches']}/{s['api_checked']} |"
        )
    seed_rows = [s for s in summaries if s["scenario"].startswith("seed")]
    if seed_rows:
        lines += [
            "",
            "The seed scenario (Locust, `loadtest/seed.py`; end-to-end latency to the second, "
            "as a client polling once a second sees it; reports in `seed-<system>.html`):",
            "",
            "| system | scenario | tasks completed | task failures | request failures | "
            "requests/s | p50 ms | p95 ms | p99 ms |",
            "| --- | --- |" + " ---: |" * 7,
        ]
        for s in seed_rows:
            lines.append(
                f"| {s['system']} | {s['scenario']} | {s['completed']} | {s['task_failures']} "
                f"| {s['failures']} | {fmt_number(s['requests_per_second'])} | "
                f"{fmt_number(s['p50_ms'])} | {fmt_number(s['p95_ms'])} | "
                f"{fmt_number(s['p99_ms'])} |"
            )
    phase_rows = [s for s in summaries if s.get("phases")]
    if phase_rows:
        lines += [
            "",
            "Where a kafka-tasks task's end-to-end time goes (from each record's own state "
            "history): accept = intended send to PENDING stored; queue = PENDING to PROGRESS "
            "(publish with acks=all, Kafka, fetch, dispatch); run = PROGRESS to COMPLETE.",
            "",
            "| scenario | accept p50 / p99 ms | queue p50 / p99 ms | run p50 / p99 ms |",
            "| --- | ---: | ---: | ---: |",
        ]
        for s in phase_rows:
            cells = [
                f"{fmt_number(s['phases'][k]['p50_ms'], 1)} / "
                f"{fmt_number(s['phases'][k]['p99_ms'], 1)}"
                for k in ("accept", "queue", "run")
            ]
            lines.append(f"| {s['scenario']} | " + " | ".join(cells) + " |")
    cpu_rows = [s for s in summaries if s.get("cpu_ms_per_task")]
    if cpu_rows:
        lines += [
            "",
            "CPU milliseconds per task, per scenario (all threads of each process, from "
            "/proc; the open-loop figures include the idle polling of the settle time):",
            "",
        ]
        for s in cpu_rows:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in s["cpu_ms_per_task"].items())
            total = sum(v for k, v in s["cpu_ms_per_task"].items() if k != "driver")
            lines.append(
                f"- {s['system']}, {s['scenario']}: {parts} (system total {total:.2f} ms/task)"
            )
    return "\n".join(lines) + "\n"


def plot(
    summaries: Sequence[dict[str, Any]], *, ceiling: float, offered_rate: float, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(22, 5.5))
    colors = {OURS: "#1f77b4", ANCHOR: "#8c8c8c"}

    def bars(ax: Any, labels: list[str], ours: list[float], anchor: list[float], unit: str) -> None:
        xs = range(len(labels))
        width = 0.38
        ax.bar([x - width / 2 for x in xs], ours, width, label=OURS, color=colors[OURS])
        ax.bar([x + width / 2 for x in xs], anchor, width, label="Celery", color=colors[ANCHOR])
        for x, mine, theirs in zip(xs, ours, anchor, strict=True):
            top = max(v for v in (mine, theirs, 0.0) if not math.isnan(v))
            ax.annotate(
                fmt_ratio(ratio(mine, theirs)),
                (x, top),
                ha="center",
                va="bottom",
                fontsize=10,
                fontweight="bold",
            )
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel(unit)
        ax.legend()

    burst_ours = _find(summaries, OURS, "burst")
    burst_anchor = _find(summaries, ANCHOR, "burst")
    bars(
        axes[0],
        ["submit", "completion"],
        [_get(burst_ours, "submit_rate"), _get(burst_ours, "completion_rate")],
        [_get(burst_anchor, "submit_rate"), _get(burst_anchor, "completion_rate")],
        "tasks/s",
    )
    # The ceiling is stated, not drawn: a line at several thousand would flatten the bars.
    axes[0].set_title(
        f"burst of noop tasks (ratio = kafka-tasks / Celery)\n"
        f"driver ceiling on a trivial endpoint: {ceiling:,.0f} requests/s"
    )
    for ax, prefix, title in (
        (axes[1], "open loop noop", f"noop @{offered_rate:g}/s"),
        (axes[2], "open loop sleep", f"sleep 50 ms @{offered_rate:g}/s"),
    ):
        ours = _find(summaries, OURS, prefix)
        anchor = _find(summaries, ANCHOR, prefix)
        keys = ["p50_ms", "p95_ms", "p99_ms"]
        bars(
            ax,
            ["p50", "p95", "p99"],
            [_get(ours, k) for k in keys],
            [_get(anchor, k) for k in keys],
            "end-to-end latency, ms",
        )
        ax.set_title(f"{title} (ratio = kafka-tasks / Celery)")
        if prefix == "open loop noop":
            ax.axhline(100, color="#d62728", linestyle="--", linewidth=1)
            ax.annotate("target p99 100 ms", (-0.4, 100), color="#d62728", va="bottom")
    _plot_targets(axes[3], targets(summaries, offered_rate=offered_rate))
    fig.suptitle(f"kafka-tasks vs FastAPI + Celery + Redis — {machine()}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_targets(ax: Any, rows: Sequence[Target]) -> None:
    """Each target as how far it is met: measured / required (required / measured for an
    upper bound); 1 or more means met."""
    labels, scores = [], []
    for row in rows:
        required = float(row.requirement.split()[-1].rstrip("x"))
        if row.requirement.startswith("="):
            score = 1.0 if row.value == required else 0.0
        elif "≤" in row.requirement:
            score = required / row.value if row.value else math.inf
        else:
            score = row.value / required
        labels.append(row.name)
        scores.append(0.0 if math.isnan(score) else min(score, 3.0))
    ys = range(len(labels))
    ax.barh(list(ys), scores, color=["#2ca02c" if s >= 1 else "#d62728" for s in scores])
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("how far met (1 = exactly; capped at 3)")
    ax.set_title("issue 12's targets")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report [results.json]``: rebuild bench.md and bench.png from a run's
    results (e.g. after changing the report), without running anything."""
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path("build/bench/results.json")
    data = json.loads(path.read_text())
    rate = float(data.get("offered_rate", 200.0))
    text = markdown(
        data["summaries"],
        ceiling=data["ceiling"],
        offered_rate=rate,
        setup=data["setup"],
        command=data.get("command", "python -m bench.run"),
    )
    (path.parent / "bench.md").write_text(text)
    plot(
        data["summaries"],
        ceiling=data["ceiling"],
        offered_rate=rate,
        path=path.with_name("bench.png"),
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
