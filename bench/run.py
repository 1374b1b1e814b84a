"""``python -m bench.run``: kafka-tasks against the Celery anchor, alternating, in one run.

Starts its own Kafka + Redis (``build/bench/.stack``), one kafka-tasks stack and one Celery
stack with the same number of API and worker processes, the trivial server for the driver's
ceiling, then runs for each scenario one system after the other:

1. burst: ``--burst`` noop tasks as fast as possible, then wait for all;
2. open loop: ``--rate`` noop tasks/s for ``--seconds``;
3. open loop: the same with a 50 ms sleeping task.

Writes ``build/bench/results.json``, ``build/bench/bench.md`` and ``build/bench/bench.png``.
With ``--profile`` it also records py-spy profiles of the kafka-tasks API and worker during a
second burst (``build/bench/profile-*.txt``, top functions by own and total time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID

from bench import cpu, driver, harness, progress, report, seed
from bench.profile import summarize_collapsed
from services.core.settings import Settings

OUT = harness.REPO_ROOT / "build" / "bench"
console = Console()


def _advance(bars: Progress, bar: TaskID, done: int, total: int) -> None:
    bars.update(bar, completed=done, total=total)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--burst", type=int, default=5000, help="tasks in the burst")
    parser.add_argument("--rate", type=float, default=200.0, help="offered tasks/s, open loop")
    parser.add_argument("--seconds", type=float, default=15.0, help="open-loop duration")
    parser.add_argument("--connections", type=int, default=64, help="driver connections")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="repeat everything, the systems' order reversed every other round; the table "
        "shows medians",
    )
    parser.add_argument("--settle", type=float, default=20.0, help="wait after the last submit")
    parser.add_argument(
        "--scenarios",
        default="burst,open,fanout,seed",
        help="comma-separated, of: burst, open (noop and 50 ms sleep), fanout, seed",
    )
    parser.add_argument("--fanout", type=int, default=10_000, help="tasks in the fan-out")
    parser.add_argument("--fanout-batch", type=int, default=1000, help="tasks per batch request")
    parser.add_argument("--seed-users", type=int, default=1000, help="Locust users, seed")
    parser.add_argument("--seed-spawn-rate", type=float, default=100.0)
    parser.add_argument("--seed-seconds", type=int, default=90)
    parser.add_argument("--apis", type=int, default=1, help="API processes per system")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per system")
    parser.add_argument("--celery-concurrency", type=int, default=64)
    parser.add_argument(
        "--celery-pool", choices=["threads", "gevent", "prefork", "solo"], default="threads"
    )
    parser.add_argument(
        "--kt-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra KT_* settings for the kafka-tasks processes (repeatable)",
    )
    parser.add_argument("--only", choices=["kafka-tasks", "celery"], help="skip the other system")
    parser.add_argument("--profile", action="store_true", help="py-spy the kafka-tasks processes")
    parser.add_argument(
        "--keep-stack",
        action="store_true",
        help="leave Kafka + Redis running for the next run (which then reuses them, with this "
        "run's topics and records; without it each run starts both with no data)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    for name in ("burst", "connections", "apis", "workers", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.rate <= 0 or args.seconds <= 0 or args.rate * args.seconds > 50_000:
        parser.error("--rate x --seconds must be positive and at most 50,000 tasks")
    args.scenarios = set(args.scenarios.split(","))
    unknown = args.scenarios - {"burst", "open", "fanout", "seed"}
    if unknown:
        parser.error(f"--scenarios: unknown {', '.join(sorted(unknown))}")
    return args


async def scenarios(targets: list[driver.Target], args: argparse.Namespace) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    noop = {"echo": "bench"}
    sleep = {"seconds": 0.05, "steps": 1}

    def keep(result: driver.RunResult) -> None:
        summary = result.summary()
        summaries.append(summary)
        console.print(
            f"  [bold]{summary['system']}[/] {summary['scenario']}: "
            f"submit {summary['submit_rate']:,.0f}/s, "
            f"completed {summary['completion_rate']:,.0f}/s, "
            f"p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms, "
            f"failures {summary['failures']}"
        )

    for target in targets if "burst" in args.scenarios else []:
        before = cpu.snapshot(target.pids)
        with progress.bars(console) as bars:
            submitted = bars.add_task(
                f"{target.name}: burst {args.burst} noop, submitted", total=args.burst
            )
            finished = bars.add_task(
                f"{target.name}: burst {args.burst} noop, finished", total=args.burst
            )
            result = await driver.burst(
                target,
                count=args.burst,
                task="noop",
                payload=noop,
                connections=args.connections,
                settle_seconds=args.settle,
                submit_progress=partial(_advance, bars, submitted),
                finish_progress=partial(_advance, bars, finished),
            )
        keep(result)
        summaries[-1]["cpu_ms_per_task"] = cpu.per_task_ms(
            before, cpu.snapshot(target.pids), summaries[-1]["completed"]
        )
    for task, payload in (("noop", noop), ("sleep", sleep)) if "open" in args.scenarios else []:
        for target in targets:
            total = int(args.rate * args.seconds)
            before = cpu.snapshot(target.pids)
            with progress.bars(console) as bars:
                bar = bars.add_task(
                    f"{target.name}: {task} @{args.rate:g}/s for {args.seconds:g}s", total=total
                )
                result = await driver.open_loop(
                    target,
                    rate=args.rate,
                    seconds=args.seconds,
                    task=task,
                    payload=payload,
                    connections=max(args.connections, 256),
                    settle_seconds=args.settle,
                    progress=partial(_advance, bars, bar),
                )
            keep(result)
            summaries[-1]["cpu_ms_per_task"] = cpu.per_task_ms(
                before, cpu.snapshot(target.pids), summaries[-1]["completed"]
            )
    for target in targets if "fanout" in args.scenarios else []:
        # kafka-tasks in batches of one request each; the anchor one request per task, as
        # fast as it takes them: how long until 10,000 tasks are in (and done).
        with progress.bars(console) as bars:
            submitted = bars.add_task(f"{target.name}: fan-out, submitted", total=args.fanout)
            finished = bars.add_task(f"{target.name}: fan-out, finished", total=args.fanout)
            common: dict[str, Any] = {
                "count": args.fanout,
                "task": "noop",
                "payload": noop,
                "settle_seconds": args.settle,
                "submit_progress": partial(_advance, bars, submitted),
                "finish_progress": partial(_advance, bars, finished),
            }
            if target.name == report.OURS:
                result = await driver.fanout(
                    target, batch=args.fanout_batch, connections=2, **common
                )
            else:
                result = await driver.burst(target, connections=args.connections, **common)
                result.scenario = f"fan-out {args.fanout} noop, one request each"
        keep(result)
    for target in targets:
        if target.observer is not None:
            # Closed here: its connections belong to this event loop (the next round's
            # asyncio.run reconnects them).
            await target.observer.close()
    return summaries


def profile_burst(
    apps: harness.Apps, urls: list[str], observer: driver.Observer, args: argparse.Namespace
) -> None:
    """py-spy (sampling, no code change) on every kafka-tasks process during one more burst."""
    pids = {name: _pid(apps, name) for name in apps.names}
    recorders = {}
    for name, pid in pids.items():
        raw = args.out / f"profile-{name}.collapsed"
        recorders[name] = (
            subprocess.Popen(
                [
                    *("py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "200"),
                    *("--output", str(raw), "--nonblocking", "--duration", "600"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            raw,
        )
    time.sleep(1.0)  # py-spy attaches asynchronously; nothing to await on its side
    console.print("[bold]profiling[/]: burst again under py-spy")
    target = driver.Target("kafka-tasks", urls, observer)

    async def run() -> None:
        try:
            await driver.burst(
                target,
                count=args.burst,
                task="noop",
                payload={"echo": "bench"},
                connections=args.connections,
                settle_seconds=args.settle,
            )
        finally:
            await observer.close()

    asyncio.run(run())
    for name, (recorder, raw) in recorders.items():
        recorder.send_signal(2)  # SIGINT: py-spy writes its output and exits
        recorder.wait(timeout=60)
        if raw.exists():
            text = summarize_collapsed(raw.read_text(), top=25)
            (args.out / f"profile-{name}.txt").write_text(text)
            console.print(f"[bold]{name}[/]\n{text}")


def _pids(state: Any, apps: harness.Apps, *, kafka: bool) -> dict[str, int]:
    """The processes a system's CPU time is counted from, named by role."""
    pids = {
        name.split("-", 1)[1] if name.startswith("bench") else name: _pid(apps, name)
        for name in apps.names
    }
    if kafka:
        pids["kafka"] = state.kafka_nodes[0].pid
    pids["redis"] = state.redis_server.pid
    pids["driver"] = os.getpid()
    return pids


def _pid(apps: harness.Apps, name: str) -> int:
    return next(app.pid for app in apps.state.apps if app.name == name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join(
        ["python -m bench.run", shlex.join(argv if argv is not None else sys.argv[1:])]
    ).strip()
    console.print("[bold]bench[/]: starting Kafka + Redis in build/bench/.stack")
    state = harness.ensure_backends()
    # Anything else running on the machine competes for the same cores: say how busy it was.
    load_before = os.getloadavg()
    started: list[harness.Apps] = []
    try:
        targets: list[driver.Target] = []
        kt_env = dict(item.split("=", 1) for item in args.kt_env)
        namespace = harness.unique_namespace("bench")
        kt_apps = None
        if args.only != "celery":
            console.print(
                f"bench: kafka-tasks, {args.apis} API + {args.workers} worker process(es)"
            )
            kt_apps = harness.start_kafka_tasks(
                state, namespace, apis=args.apis, workers=args.workers, env=kt_env
            )
            started.append(kt_apps)
            targets.append(
                driver.Target(
                    "kafka-tasks",
                    kt_apps.urls,
                    driver.KafkaTasksObserver(state.redis_url, namespace),
                    pids=_pids(state, kt_apps, kafka=True),
                )
            )
        if args.only != "kafka-tasks":
            console.print(f"bench: Celery, {args.apis} API + {args.workers} worker process(es)")
            celery_apps = harness.start_celery(
                state,
                apis=args.apis,
                workers=args.workers,
                concurrency=args.celery_concurrency,
                pool=args.celery_pool,
            )
            started.append(celery_apps)
            targets.append(
                driver.Target(
                    "celery",
                    celery_apps.urls,
                    driver.CeleryObserver(harness.celery_redis_url(state)),
                    pids=_pids(state, celery_apps, kafka=False),
                )
            )
        with harness.trivial_server(state) as trivial:
            console.print("bench: driver ceiling against the trivial endpoint (3 s)")
            ceiling = asyncio.run(
                driver.ceiling(
                    trivial,
                    seconds=3.0,
                    connections=args.connections,
                    body=driver.task_body("noop", {"echo": "bench"}),
                )
            )
        console.print(f"  driver ceiling: {ceiling:,.0f} requests/s")
        summaries = []
        for round_ in range(args.rounds):
            order = targets if round_ % 2 == 0 else targets[::-1]
            if args.rounds > 1:
                console.print(f"[bold]round {round_ + 1} of {args.rounds}[/]")
            summaries += asyncio.run(scenarios(order, args))
        if "seed" in args.scenarios:
            options = seed.SeedOptions(args.seed_users, args.seed_spawn_rate, args.seed_seconds)
            for target in targets:
                console.print(
                    f"[bold]seed scenario[/]: {target.name}, {options.users} Locust users for "
                    f"{options.seconds} s (Locust prints its summary at the end)"
                )
                summaries.append(seed.run(target.name, target.urls[0], options, args.out))
        if args.profile and kt_apps is not None:
            observer = driver.KafkaTasksObserver(state.redis_url, namespace)
            profile_burst(kt_apps, kt_apps.urls, observer, args)
        setup: dict[str, Any] = {
            "API processes per system": args.apis,
            "worker processes per system": args.workers,
            "kafka-tasks worker concurrency": kt_env.get(
                "KT_WORKER_CONCURRENCY",
                f"{Settings.model_fields['worker_concurrency'].default} (default)",
            ),
            "Celery pool": f"{args.celery_pool} x {args.celery_concurrency}",
            "driver connections": args.connections,
            "burst": args.burst,
            "open loop": f"{args.rate:g}/s x {args.seconds:g} s",
            "rounds": args.rounds,
            "load average before": " ".join(f"{v:.2f}" for v in load_before),
        }
        if kt_env:
            setup["kafka-tasks settings"] = " ".join(f"{k}={v}" for k, v in kt_env.items())
        (args.out / "results.json").write_text(
            json.dumps(
                {
                    "ceiling": ceiling,
                    "offered_rate": args.rate,
                    "command": command,
                    "setup": setup,
                    "summaries": summaries,
                },
                indent=2,
            )
        )
        text = report.markdown(
            summaries, ceiling=ceiling, offered_rate=args.rate, setup=setup, command=command
        )
        (args.out / "bench.md").write_text(text)
        report.plot(summaries, ceiling=ceiling, offered_rate=args.rate, path=args.out / "bench.png")
        console.print(text)
        console.print(f"bench: wrote {args.out}/bench.md, bench.png, results.json")
    finally:
        for apps in started:
            apps.close()
        if not args.keep_stack:
            harness.stop_backends(state)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
