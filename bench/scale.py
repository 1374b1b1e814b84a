"""``python -m bench.scale``: does adding workers drain lag, and what does a rebalance cost?

Part 1, throughput: with 1, 2 and 4 worker processes (topics with 4 partitions), submit a
backlog of sleeping tasks and watch it drain. The consumer lag is read from Kafka the way
KEDA's scaler reads it, every half second, together with the replica count a ScaledObject
(``--lag-threshold``, max = partitions) would ask for. Per-worker efficiency is
``throughput(n) / (n x throughput(1))``.

The task sleeps (``--task-seconds``) and each worker runs at most ``--concurrency`` at once,
so one worker's capacity is ``concurrency / seconds`` tasks/s: the workload of I/O-bound
tasks that scaling out is for. On a 2-core machine a CPU-bound task could not show more than
two workers' worth of gain, whatever the platform does.

Part 2, rebalance pause: at a steady offered rate one worker runs; a second joins, then
leaves (SIGTERM). The pause is the longest stretch without any task finishing after each
event (at the offered rate the normal gap is ``1 / rate``).

Writes ``build/bench/scale.md``, ``scale.png`` and ``scale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from rich.console import Console

from bench import driver, harness, progress
from bench.report import machine
from bench.stats import fmt_number, percentile
from devstack import stack
from kedacheck.build import ensure_scaler
from kedacheck.errors import KedaCheckError
from kedacheck.probe import Probe, Reading, probing
from kedacheck.stacks import StackScaledObject, chart_version, stack_scaled_object
from services.core.topics import task_topic

console = Console()
OUT = harness.REPO_ROOT / "build" / "bench"
SCALED_OBJECT_STACK = "dev"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    parser.add_argument("--backlog", type=int, default=1000, help="tasks per worker count")
    parser.add_argument("--task-seconds", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=4, help="KT_WORKER_CONCURRENCY")
    parser.add_argument("--partitions", type=int, default=4, help="KT_TOPIC_PARTITIONS")
    parser.add_argument("--lag-threshold", type=int, default=50, help="KEDA lagThreshold")
    parser.add_argument(
        "--rate",
        type=float,
        default=25.0,
        help="offered rate in the rebalance part (below one "
        "worker's capacity, so that latency shows the pause and not a growing queue)",
    )
    parser.add_argument("--rebalance-seconds", type=float, default=40.0)
    parser.add_argument("--keep-stack", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.worker_counts = [int(n) for n in args.workers.split(",")]
    if args.backlog < 1 or args.backlog > 20_000 or min(args.worker_counts) < 1:
        parser.error("--backlog must be within 1..20000 and worker counts positive")
    if max(args.worker_counts) > args.partitions:
        console.print("[yellow]more workers than partitions: the extra ones will sit idle[/]")
    return args


async def sample_lag(
    probe: Probe, topic: str, running: Callable[[], int], samples: list[dict[str, Any]]
) -> None:
    """Every 0.5 s: the lag, and the replicas KEDA's own scaler and the model ask for with the
    workers ``running`` now, read on the same offsets (until cancelled)."""
    start = time.time()
    while True:
        workers = running()
        try:
            reading = await probe.read(f"{workers} worker(s) running", current=workers)
        except (KafkaError, KedaCheckError) as error:  # e.g. the coordinator still loading
            console.print(f"  [yellow]lag not read[/] ({type(error).__name__}: {error}); retrying")
            await asyncio.sleep(0.5)
            continue
        figures = reading.figures
        trigger = figures.trigger(topic)
        samples.append(
            {
                "t": time.time() - start,
                "workers": workers,
                "lag": trigger.lag,
                "keda_metric": trigger.keda_metric,
                "model_metric": trigger.model_metric,
                "keda_replicas": figures.keda_replicas,
                "model_replicas": figures.model_replicas,
                "keda_active": figures.keda_active,
                "agree": figures.agree,
            }
        )
        await asyncio.sleep(0.5)


async def drain(
    target: driver.Target,
    args: argparse.Namespace,
    apps: harness.Apps,
    env: dict[str, str],
    namespace: str,
    workers: int,
    scaled: StackScaledObject,
    binary: Path,
) -> dict[str, Any]:
    """With no worker running, put ``--backlog`` tasks on the topic; then start ``workers``
    workers and time how fast they drain it (first to last finish). Meanwhile KEDA's own
    scaler polls the ScaledObject the infra renders (for this run's topics), next to the
    model."""
    samples: list[dict[str, Any]] = []
    running = [0]
    readings: list[Reading] = []
    bootstrap = apps.state.bootstrap_servers
    async with probing(binary, scaled.manifest, bootstrap, readings) as probe:
        sampler = asyncio.create_task(
            sample_lag(probe, task_topic(namespace, "sleep"), lambda: running[0], samples)
        )
        try:
            with progress.bars(console, label_width=36) as bars:
                bar = bars.add_task(f"{workers} worker(s): backlog drained", total=args.backlog)

                async def start_workers() -> None:
                    await asyncio.to_thread(_start_workers, apps, namespace, workers, env)
                    running[0] = workers

                result = await driver.burst(
                    target,
                    count=args.backlog,
                    task="sleep",
                    payload={"seconds": args.task_seconds, "steps": 1},
                    connections=32,
                    settle_seconds=60,
                    finish_progress=lambda done, _: bars.update(bar, completed=done),
                    after_submit=start_workers,
                )
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    await asyncio.to_thread(_stop_workers, apps)
    finishes = sorted(at for state, at in result.finished.values() if state == "COMPLETE")
    span = finishes[-1] - finishes[0] if len(finishes) > 1 else float("nan")
    throughput = (len(finishes) - 1) / span if span > 0 else float("nan")
    # Steady state: the middle 80 % of the finishes, leaving out the start (workers joining
    # one after another, each join a rebalance) and the tail (fewer tasks than slots).
    low, high = int(len(finishes) * 0.1), int(len(finishes) * 0.9)
    middle = finishes[high] - finishes[low] if high > low else float("nan")
    steady = (high - low) / middle if middle > 0 else float("nan")
    for sample in samples:
        sample["t"] = round(sample["t"], 2)
    return {
        "workers": workers,
        "completed": len(finishes),
        "failures": result.failures,
        "throughput": throughput,
        "steady_throughput": steady,
        "capacity": workers * args.concurrency / args.task_seconds,
        "drain_seconds": finishes[-1] - result.started if finishes else float("nan"),
        # None, not 0, when no sample was read: the table says "n/a" rather than "no lag".
        "peak_lag": max((s["lag"] for s in samples), default=None),
        "peak_keda_replicas": max((s["keda_replicas"] or 0 for s in samples), default=None),
        "peak_model_replicas": max((s["model_replicas"] for s in samples), default=None),
        "samples_agreeing": sum(1 for s in samples if s["agree"]),
        "samples": samples,
    }


def scaled_object(args: argparse.Namespace, bootstrap: str, namespace: str) -> StackScaledObject:
    """The dev stack's ScaledObject as the infra renders it, for this run's topics: their
    namespace and partitions, ``--lag-threshold``, replicas between 1 and the partitions."""
    overrides = {
        "taskNamespace": namespace,
        "topicPartitions": args.partitions,
        "workerMinReplicas": 1,
        "workerMaxReplicas": args.partitions,
        "lagThreshold": args.lag_threshold,
    }
    return stack_scaled_object(SCALED_OBJECT_STACK, bootstrap, overrides)


def _or_na(value: object) -> str:
    return "n/a" if value is None else str(value)


def _start_workers(apps: harness.Apps, namespace: str, count: int, env: dict[str, str]) -> None:
    started = [harness.add_worker(apps, namespace, index, env) for index in range(count)]
    for worker in started:
        stack.wait_app_ready(worker, timeout=90)


def _stop_workers(apps: harness.Apps) -> None:
    workers = [name for name in apps.names if "-worker-" in name]
    stack.stop_apps(apps.state, workers, grace_seconds=30)
    apps.names = [name for name in apps.names if name not in workers]


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest interval in [start, end] without an element of ``times`` (seconds)."""
    inside = sorted(t for t in times if start <= t <= end)
    points = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(points))


async def rebalance(
    target: driver.Target, apps: harness.Apps, args: argparse.Namespace, namespace: str
) -> dict[str, Any]:
    """Steady load on one worker; a second joins at 25 % of the run and leaves at 60 %."""
    events: dict[str, float] = {}
    extra: list[str] = []

    async def choreography() -> None:
        await asyncio.sleep(args.rebalance_seconds * 0.25)
        events["join"] = time.time()
        worker = await asyncio.to_thread(
            harness.add_worker,
            apps,
            namespace,
            99,
            {"KT_WORKER_CONCURRENCY": str(args.concurrency)},
        )
        extra.append(worker.name)
        await asyncio.to_thread(stack.wait_app_ready, worker, timeout=90)
        events["joined_ready"] = time.time()
        await asyncio.sleep(max(args.rebalance_seconds * 0.60 - (time.time() - start), 0))
        events["leave"] = time.time()
        await asyncio.to_thread(stack.stop_apps, apps.state, extra, grace_seconds=30)
        events["left"] = time.time()

    start = time.time()
    moves = asyncio.create_task(choreography())
    with progress.bars(console, label_width=36) as bars:
        total = int(args.rate * args.rebalance_seconds)
        bar = bars.add_task(f"rebalance: {args.rate:g}/s, join + leave", total=total)
        result = await driver.open_loop(
            target,
            rate=args.rate,
            seconds=args.rebalance_seconds,
            task="sleep",
            payload={"seconds": args.task_seconds, "steps": 1},
            connections=64,
            settle_seconds=60,
            progress=lambda done, _: bars.update(bar, completed=done),
        )
    await moves
    apps.names = [name for name in apps.names if name not in extra]
    finishes = [at for state, at in result.finished.values() if state == "COMPLETE"]
    window = 15.0
    latencies = result.latencies_ms

    def worst_after(event: float, seconds: float = 10.0) -> float:
        """Max end-to-end latency of tasks meant to be sent within ``seconds`` of ``event``."""
        worst = [
            (result.finished[s.task_id][1] - s.intended) * 1000
            for s in result.accepted
            if s.task_id in result.finished and event <= s.intended <= event + seconds
        ]
        return max(worst, default=float("nan"))

    before = [
        (result.finished[s.task_id][1] - s.intended) * 1000
        for s in result.accepted
        if s.task_id in result.finished and s.intended < events["join"]
    ]
    return {
        "rate": args.rate,
        "normal_gap_ms": 1000 / args.rate,
        "join_pause_s": longest_gap(finishes, events["join"], events["join"] + window),
        "join_ready_s": events["joined_ready"] - events["join"],
        "leave_pause_s": longest_gap(finishes, events["leave"], events["leave"] + window),
        "leave_stop_s": events["left"] - events["leave"],
        "baseline_p99_ms": percentile(before, 0.99),
        "join_worst_ms": worst_after(events["join"]),
        "leave_worst_ms": worst_after(events["leave"]),
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies) if latencies else float("nan"),
        "failures": result.failures,
        "finishes": sorted(round(t - start, 3) for t in finishes),
        "events": {name: round(at - start, 3) for name, at in events.items()},
    }


def markdown(runs: list[dict[str, Any]], pause: dict[str, Any], args: argparse.Namespace) -> str:
    base = runs[0]["steady_throughput"] / runs[0]["workers"]
    lines = [
        "# Workers against lag",
        "",
        f"Machine: {machine()}.",
        f"Sleeping task ({args.task_seconds:g} s), worker concurrency {args.concurrency}, "
        f"{args.partitions} partitions, backlog {args.backlog} tasks per step, "
        f"KEDA lagThreshold {args.lag_threshold}.",
        "",
        "| workers | steady throughput, tasks/s | vs 1 worker | per-worker efficiency | "
        "capacity (concurrency / task time) | first to last finish, tasks/s | "
        "submit to drained, s | peak lag | peak replicas, KEDA / model | "
        "samples where KEDA and the model agree | failures |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        speedup = run["steady_throughput"] / runs[0]["steady_throughput"]
        efficiency = run["steady_throughput"] / (run["workers"] * base)
        lines.append(
            f"| {run['workers']} | {fmt_number(run['steady_throughput'], 1)} | {speedup:.2f}x | "
            f"{efficiency:.0%} | {fmt_number(run['capacity'])} | "
            f"{fmt_number(run['throughput'], 1)} | "
            f"{fmt_number(run['drain_seconds'], 1)} | {_or_na(run['peak_lag'])} | "
            f"{_or_na(run['peak_keda_replicas'])} / {_or_na(run['peak_model_replicas'])} | "
            f"{run['samples_agreeing']} of {len(run['samples'])} | {run['failures']} |"
        )
    lines += [
        "",
        f"Rebalance at {pause['rate']:g} tasks/s offered (normal gap between finishes "
        f"{pause['normal_gap_ms']:.0f} ms):",
        "",
        "| event | longest stretch without a finished task | worst latency of tasks sent in "
        "the next 10 s | process took |",
        "| --- | ---: | ---: | ---: |",
        f"| (before: one worker, steady) | | p99 {pause['baseline_p99_ms']:.0f} ms | |",
        f"| a worker joins | {pause['join_pause_s']:.2f} s | {pause['join_worst_ms']:.0f} ms | "
        f"{pause['join_ready_s']:.1f} s to be ready |",
        f"| a worker leaves (SIGTERM) | {pause['leave_pause_s']:.2f} s | "
        f"{pause['leave_worst_ms']:.0f} ms | {pause['leave_stop_s']:.1f} s to exit |",
        "",
        f"Latency over the whole rebalance run: p50 {pause['p50_ms']:.0f} ms, p99 "
        f"{pause['p99_ms']:.0f} ms, max {pause['max_ms']:.0f} ms; failures {pause['failures']}.",
        "",
        "Every lag sample, read as KEDA's own kafka scaler reads it (the ScaledObject the infra "
        "renders, for this run's topics, polled by KEDA's code) beside the model "
        "(`services/core/scaling.py`) on the same offsets; replicas for the workers running:",
        "",
    ]
    for run in runs:
        lines += [
            f"<details><summary>{run['workers']} worker(s): "
            f"{len(run['samples'])} samples</summary>",
            "",
            "| t, s | workers running | lag | metric KEDA / model | active | "
            "replicas KEDA / model |",
            "| ---: | ---: | ---: | ---: | --- | ---: |",
        ]
        lines += [
            f"| {s['t']:.1f} | {s['workers']} | {s['lag']} | {_or_na(s['keda_metric'])} / "
            f"{s['model_metric']} | {'yes' if s['keda_active'] else 'no'} | "
            f"{_or_na(s['keda_replicas'])} / {s['model_replicas']} |"
            for s in run["samples"]
        ]
        lines += ["", "</details>", ""]
    return "\n".join(lines) + "\n"


def plot(runs: list[dict[str, Any]], pause: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    replicas_axis = axes[0].twinx()
    for run in runs:
        ts = [s["t"] for s in run["samples"]]
        (line,) = axes[0].plot(
            ts, [s["lag"] for s in run["samples"]], label=f"{run['workers']} worker(s)"
        )
        replicas_axis.step(
            ts,
            [s["keda_replicas"] for s in run["samples"]],
            where="post",
            linestyle=":",
            color=line.get_color(),
        )
    axes[0].set(title="consumer lag; dotted: replicas KEDA asks for", xlabel="s")
    axes[0].set_ylabel("messages")
    replicas_axis.set_ylabel("replicas (KEDA's scaler + HPA)")
    axes[0].legend()
    workers = [run["workers"] for run in runs]
    throughput = [run["steady_throughput"] for run in runs]
    ideal = [runs[0]["steady_throughput"] * n / runs[0]["workers"] for n in workers]
    axes[1].bar([str(n) for n in workers], throughput, color="#1f77b4", label="measured")
    axes[1].plot([str(n) for n in workers], ideal, "k--", label="linear")
    for x, (value, perfect) in enumerate(zip(throughput, ideal, strict=True)):
        axes[1].annotate(f"{value / perfect:.0%}", (x, value), ha="center", va="bottom")
    axes[1].set(title="steady throughput (label: per-worker efficiency)", xlabel="workers")
    axes[1].set_ylabel("tasks/s")
    axes[1].legend()
    finishes = pause["finishes"]
    if finishes:
        bins = [i * 0.25 for i in range(int(max(finishes) / 0.25) + 2)]
        axes[2].hist(finishes, bins=bins, color="#1f77b4")
    for name, at in pause["events"].items():
        if name in ("join", "leave"):
            axes[2].axvline(at, color="#d62728", linestyle="--")
            axes[2].annotate(f"worker {name}s", (at, 0), rotation=90, va="bottom", color="#d62728")
    axes[2].set(title="tasks finished per 250 ms during join / leave", xlabel="s")
    fig.suptitle(f"kafka-tasks: workers vs lag — {machine()}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # KEDA's own scaler, at the dev stack's chart version (built once, cached outside the repo).
    binary = ensure_scaler(chart_version(SCALED_OBJECT_STACK), console).binary
    console.print("[bold]bench-scale[/]: starting Kafka + Redis in build/bench/.stack")
    state = harness.ensure_backends()
    namespace = harness.unique_namespace("scale")
    env = {
        "KT_TOPIC_PARTITIONS": str(args.partitions),
        "KT_WORKER_CONCURRENCY": str(args.concurrency),
    }
    apps = harness.start_kafka_tasks(state, namespace, apis=1, workers=0, env=env)
    try:
        scaled = scaled_object(args, state.bootstrap_servers, namespace)
        runs = []
        for count in args.worker_counts:
            target = driver.Target(
                "kafka-tasks", apps.urls, driver.KafkaTasksObserver(state.redis_url, namespace)
            )
            work = drain(target, args, apps, env, namespace, count, scaled, binary)
            run = asyncio.run(_closing(target, work))
            console.print(
                f"  {count} worker(s): {run['steady_throughput']:.1f} tasks/s steady, "
                f"peak lag {_or_na(run['peak_lag'])}"
            )
            runs.append(run)
        # One worker for the rebalance part.
        _start_workers(apps, namespace, 1, env)
        target = driver.Target(
            "kafka-tasks", apps.urls, driver.KafkaTasksObserver(state.redis_url, namespace)
        )
        pause = asyncio.run(_closing(target, rebalance(target, apps, args, namespace)))
        (args.out / "scale.json").write_text(
            json.dumps({"runs": runs, "rebalance": pause}, indent=2)
        )
        text = markdown(runs, pause, args)
        (args.out / "scale.md").write_text(text)
        plot(runs, pause, args.out / "scale.png")
        console.print(text)
        console.print(f"bench-scale: wrote {args.out}/scale.md, scale.png, scale.json")
    finally:
        apps.close()
        if not args.keep_stack:
            harness.stop_backends(state)
    return 0


async def _closing(target: driver.Target, work: Any) -> Any:
    try:
        return await work
    finally:
        if target.observer is not None:
            await target.observer.close()


if __name__ == "__main__":
    raise SystemExit(main())
