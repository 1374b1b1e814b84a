"""The run's report: ``report.md`` (the seed, the faults, the figures, every violation with the
faults around it) and ``timeline.png`` (fault windows as bands; submissions, completions and
errors per second)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from chaos.checker import Verdict, faults_around
from chaos.nemesis import Injected
from chaos.snapshot import Snapshot
from chaos.workload import Op
from services.core.states import TaskState


@dataclass
class Run:
    seed: int
    duration: float
    longest_fault: float
    started_wall: datetime
    ops: list[Op]
    injected: list[Injected]
    snapshot: Snapshot
    verdict: Verdict
    settle_seconds: float

    def at(self, moment: datetime) -> float:
        """Seconds since the run started."""
        return (moment - self.started_wall).total_seconds()


def figures(run: Run) -> dict[str, float | int]:
    ops, records = run.ops, run.snapshot.records
    accepted = {op.task_id for op in ops if op.kind == "submit" and op.status == 202}
    finished = [records[i] for i in accepted if i in records and records[i].status.is_terminal]
    reruns = 0
    for record in finished:
        retries = sum(1 for r in run.snapshot.histories[str(record.id)] if r.status == "RETRY")
        reruns += 1 if record.attempts > 1 + retries else 0
    waits = [run.at(r.updated_at) - run.at(r.created_at) for r in finished]
    answers = Counter(str(op.status or op.failure) for op in ops)
    return {
        "faults injected": sum(1 for i in run.injected if i.started is not None),
        "requests": len(ops),
        "submissions": sum(1 for op in ops if op.kind == "submit"),
        "tasks accepted (202)": len(accepted),
        "completed": sum(1 for r in finished if r.status is TaskState.COMPLETE),
        "failed (as their task does)": sum(1 for r in finished if r.status is TaskState.FAILURE),
        "cancelled": sum(1 for r in finished if r.status is TaskState.CANCELLED),
        "re-run (started again without a retry)": reruns,
        "lost (accepted, not finished)": len(accepted) - len(finished),
        "longest submit-to-finish (s)": round(max(waits, default=0.0), 1),
        "answered 503": answers.get("503", 0),
        "answered 504": answers.get("504", 0),
        "no answer (API killed)": answers.get("no-answer", 0),
        "refused (API down)": answers.get("refused", 0),
        "settle time (s)": round(run.settle_seconds, 1),
        **run.verdict.figures,
    }


def write(run: Run, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    numbers = figures(run)
    kinds = Counter(str(i.fault.kind) for i in run.injected if i.started is not None)
    lines = [
        f"# Chaos run, seed {run.seed}",
        "",
        f"{run.duration:.0f} s of workload, faults of 2 to {run.longest_fault:.0f} s. "
        f"Replay: `make chaos SEED={run.seed} DURATION={run.duration:.0f}s "
        f"LONGEST={run.longest_fault:.0f}`.",
        "",
        f"**{len(run.verdict.violations)} violation(s).**",
        "",
        "![timeline](timeline.png)",
        "",
        "## Figures",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in numbers.items()),
        "",
        "## Faults by kind",
        "",
        "| kind | injected |",
        "| --- | --- |",
        *(f"| {kind} | {count} |" for kind, count in sorted(kinds.items())),
        "",
        "## Faults",
        "",
        "| # | kind | targets | from (s) | to (s) | note |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {i.fault.number} | {i.fault.kind} | {', '.join(i.fault.targets)} | "
            f"{(i.started or 0):.1f} | {(i.healed or 0):.1f} | {i.note} |"
            for i in run.injected
        ),
        "",
        "## Violations",
        "",
    ]
    if not run.verdict.violations:
        lines.append("None.")
    for violation in run.verdict.violations:
        around = faults_around(run.injected, violation.at)
        lines += [
            f"- **{violation.check}**: {violation.detail}",
            *([f"  - tasks: {', '.join(violation.task_ids[:20])}"] if violation.task_ids else []),
            *([f"  - at {violation.at:.1f} s, near: {'; '.join(around)}"] if around else []),
        ]
    report = directory / "report.md"
    report.write_text("\n".join(lines) + "\n")
    _plot(run, directory / "timeline.png")
    return report


def _plot(run: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = int(run.duration + run.settle_seconds) + 5
    accepted = [0] * seconds
    errors = [0] * seconds
    finished = [0] * seconds
    for op in run.ops:
        second = min(int(op.sent_at), seconds - 1)
        if op.status == 202:
            accepted[second] += 1
        elif op.status not in (200, 409):
            errors[second] += 1
    for record in run.snapshot.records.values():
        if record.status.is_terminal:
            finished[min(max(int(run.at(record.updated_at)), 0), seconds - 1)] += 1

    targets = sorted({t for i in run.injected for t in i.fault.targets})
    kinds = sorted({str(i.fault.kind) for i in run.injected})
    palette = plt.get_cmap("tab10")
    colours = {kind: palette(index % 10) for index, kind in enumerate(kinds)}
    figure, (bands, rates) = plt.subplots(
        2, 1, figsize=(14, 7), sharex=True, gridspec_kw={"height_ratios": [1, 2]}
    )
    for item in run.injected:
        if item.started is None:
            continue
        for target in item.fault.targets:
            bands.barh(
                targets.index(target),
                (item.healed or item.started) - item.started,
                left=item.started,
                color=colours[str(item.fault.kind)],
                label=str(item.fault.kind),
            )
    handles, labels = bands.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    bands.legend(unique.values(), unique.keys(), fontsize=7, ncol=5, loc="upper left")
    bands.set_yticks(range(len(targets)), targets, fontsize=8)
    bands.set_title(f"chaos run, seed {run.seed}: faults")
    rates.plot(accepted, label="accepted (202) / s", linewidth=0.9)
    rates.plot(finished, label="finished / s", linewidth=0.9)
    rates.plot(errors, label="errors (503, 504, no answer, refused) / s", linewidth=0.9)
    rates.axvline(run.duration, color="grey", linestyle=":", label="workload stops")
    rates.set_xlabel("seconds since the start")
    rates.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
