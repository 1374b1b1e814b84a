"""`make bench-state`: what the state layer costs in Redis memory, and how many tasks' state
writes it sustains on one Redis server and on a 3-master Redis Cluster.

Memory: a real API and worker (from this checkout, or from ``--source`` another checkout
with its own ``.venv``, to measure a version before a change) run N tasks over HTTP; the
figure is Redis's ``used_memory`` after they all finished minus before, per task. Records,
events, indexes and counters are all in it; a finished record lives ``KT_RESULT_TTL_SECONDS``.

Throughput: the project's own store (``TaskStore``, the real Lua scripts) driven by
``--processes`` processes with ``--concurrency`` tasks each, every task written as a noop
task is by the API and a worker: create, confirm the publication, start, complete. Both
modes run in the same invocation, one after the other, on the same machine: a standalone
Redis and a cluster of 3 masters (no replicas, AOF on like the server). CPU per task comes
from each redis-server's /proc stat, so the cluster's per-master figures say what one
master would carry on a machine of its own.

``--baseline ../main`` measures the memory of that checkout first, in the same run, as the
"before" column (``--before state.json`` takes it from an earlier run instead).

Output: ``build/bench/state.md``, ``state.png`` and ``state.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import redis
from rich.console import Console
from rich.progress import Progress as Bars
from rich.progress import TaskID

from bench import progress
from bench.cpu import cpu_seconds
from bench.report import machine
from devstack import redis as devstack_redis
from devstack import stack
from devstack.processes import free_port, spawn, stop, wait_for
from services.core.keys import new_task_id
from services.core.models import Progress
from services.core.redis_client import connect
from services.core.settings import Settings
from services.core.states import TaskState
from services.core.store import TaskStore

REPO_ROOT = stack.REPO_ROOT
HOME = REPO_ROOT / "build" / "bench" / ".state-stack"
OUT = REPO_ROOT / "build" / "bench"
console = Console()


# --- memory ------------------------------------------------------------------------------
@dataclass
class MemoryFigure:
    scenario: str
    tasks: int
    bytes_per_task: float
    source: str


def used_memory(port: int) -> int:
    client = redis.Redis(port=port)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def start_service(
    source: Path, module: str, name: str, env: dict[str, str], port: int
) -> tuple[int, str]:
    python = source / ".venv" / "bin" / "python"
    log = HOME / "logs" / f"{name}.log"
    pid = spawn([str(python), "-m", module], log_file=log, env=env, cwd=source)
    return pid, f"http://127.0.0.1:{port}"


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def run_tasks(
    url: str,
    task: str,
    payload: dict[str, Any],
    count: int,
    *,
    until: str = "COMPLETE",
    expected: int | None = None,
    shown: tuple[Bars, TaskID] | None = None,
) -> None:
    """Submit ``count`` tasks, 32 at a time, then wait until ``expected`` (default ``count``)
    tasks are in state ``until`` (the dashboard summary's count, which both versions serve).
    ``shown``: a progress bar (of ``count``) advanced as tasks are accepted, then as they
    reach ``until``."""
    target = expected or count
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        slots = asyncio.Semaphore(32)

        async def submit() -> None:
            async with slots:
                response = await client.post("/tasks", json={"task": task, "payload": payload})
                response.raise_for_status()
                if shown is not None:
                    shown[0].advance(shown[1])

        await asyncio.gather(*(submit() for _ in range(count)))
        if shown is not None:
            shown[0].update(shown[1], description=f"{shown[0].tasks[shown[1]].description} ->")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            reached = (await client.get("/dashboard/summary")).json()["counts"][task][until]
            if shown is not None:
                # ``reached`` may count the warm-up tasks: show only this run's share.
                shown[0].update(shown[1], completed=max(0, count - (target - reached)))
            if reached >= target:
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{target} {task} tasks did not reach {until} in time")


def measure_memory(source: Path, tasks: int, sleep_tasks: int) -> list[MemoryFigure]:
    stack.share_jar_cache(HOME)
    state, _ = stack.ensure_backends(HOME, keep_data=False)
    assert state.redis_server is not None
    port = state.redis_server.port
    figures = []
    scenarios = [
        ("noop", {}, tasks, "finished noop task", True),
        (
            "sleep",
            {"seconds": 0.5, "steps": 10},
            sleep_tasks,
            "sleep task, 10 progress steps",
            True,
        ),
        ("noop", {}, tasks, "queued noop task (no worker yet)", False),
    ]
    for task, payload, count, label, with_worker in scenarios:
        namespace = f"mem{task}{os.getpid()}"
        env = {
            **os.environ,
            **state.service_env(namespace),
            "KT_WORKER_CONCURRENCY": "64",
            "KT_LOG_LEVEL": "WARNING",
        }
        api_port, web_port = free_port(), free_port()
        api, url = start_service(
            source,
            "services.api",
            f"{namespace}-api",
            {**env, "KT_API_PORT": str(api_port)},
            api_port,
        )
        worker, worker_url = start_service(
            source,
            "services.worker",
            f"{namespace}-worker",
            {**env, "KT_WORKER_WEB_PORT": str(web_port)},
            web_port,
        )
        try:
            for pid_url in (url, worker_url):
                if not wait_for(partial(ready, pid_url), timeout=120):
                    raise RuntimeError(f"{pid_url} did not become ready (see {HOME / 'logs'})")
            # Warm up (scripts loaded, topics and indexes made), then measure.
            asyncio.run(run_tasks(url, task, payload, 20))
            if not with_worker:
                stop(worker)
            time.sleep(1)
            before = used_memory(port)
            # The 20 warm-up tasks count among the COMPLETE ones, not among the PENDING.
            until, total = ("COMPLETE", 20 + count) if with_worker else ("PENDING", count)
            with progress.bars(console) as bars:
                bar = bars.add_task(f"{label}: submitted", total=count)
                asyncio.run(
                    run_tasks(
                        url,
                        task,
                        payload,
                        count,
                        until=until,
                        expected=total,
                        shown=(bars, bar),
                    )
                )
                bars.update(bar, description=f"{label}: {until}")
            time.sleep(2)  # the worker's last writes and lease renewals
            after = used_memory(port)
        finally:
            stop(api)
            stop(worker)
        figures.append(MemoryFigure(label, count, (after - before) / count, str(source)))
        console.print(f"  {label}: {(after - before) / count:,.0f} bytes per task")
    stack.stop_all(state)
    return figures


# --- throughput ----------------------------------------------------------------------------
@dataclass
class ThroughputFigure:
    mode: str
    tasks: int
    seconds: float
    tasks_per_second: float
    redis_cpu_us_per_task: dict[str, float] = field(default_factory=dict)
    """Per redis-server process (the masters of a cluster), CPU µs per task."""
    driver_cpu_us_per_task: float = 0.0


async def drive(settings: Settings, concurrency: int, seconds: float) -> int:
    """Write noop tasks' lifecycles for ``seconds``; returns how many finished."""
    client = connect(settings)
    store = TaskStore.from_settings(client, settings)
    done = 0
    deadline = time.monotonic() + seconds

    async def lifecycle() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            task_id = new_task_id()
            await store.create(task_id, "noop", {"echo": None})
            await store.confirm_published(task_id, position=f"bench/0/{task_id}")
            start = Progress(percent=0, message="started")
            await store.transition(
                task_id, TaskState.PROGRESS, task="noop", progress=start, start_delivery="b/0/1"
            )
            await store.transition(task_id, TaskState.COMPLETE, task="noop", result=None, attempt=1)
            done += 1

    await asyncio.gather(*(lifecycle() for _ in range(concurrency)))
    await client.aclose()
    return done


def driver_process(args: tuple[dict[str, Any], int, float]) -> tuple[int, float]:
    settings_data, concurrency, seconds = args
    settings = Settings(**settings_data)
    started = time.process_time()
    done = asyncio.run(drive(settings, concurrency, seconds))
    return done, time.process_time() - started


def measure_throughput(
    mode: str, settings: Settings, pids: dict[str, int], args: argparse.Namespace
) -> ThroughputFigure:
    payload = settings.model_dump(include={"namespace", "redis_url", "redis_cluster"})
    payload["result_ttl_seconds"] = 60
    work = [(payload, args.concurrency, args.seconds)] * args.processes
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        # Scripts loaded, connections opened: a short run that is not counted.
        pool.map(driver_process, [(payload, 4, 1.0)] * args.processes)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        with progress.bars(console) as bars:
            bar = bars.add_task(f"throughput: {mode}, seconds", total=int(args.seconds))
            pending = pool.map_async(driver_process, work)
            while not pending.ready():
                pending.wait(0.5)
                bars.update(bar, completed=min(args.seconds, time.monotonic() - started))
            answers = pending.get()
        elapsed = time.monotonic() - started
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    tasks = sum(done for done, _ in answers)
    figure = ThroughputFigure(
        mode,
        tasks,
        elapsed,
        tasks / elapsed,
        {name: 1e6 * (after[name] - before[name]) / tasks for name in pids},
        1e6 * sum(cpu for _, cpu in answers) / tasks,
    )
    console.print(
        f"  {mode}: {figure.tasks_per_second:,.0f} tasks/s; Redis CPU per task "
        + ", ".join(f"{n} {v:.0f} µs" for n, v in figure.redis_cpu_us_per_task.items())
    )
    return figure


def throughput(args: argparse.Namespace) -> list[ThroughputFigure]:
    shutil.rmtree(HOME / "throughput", ignore_errors=True)
    home = HOME / "throughput"
    server = devstack_redis.start(home, preferred_port=None)
    nodes = devstack_redis.start_cluster_nodes(home, replicas=0)
    try:
        devstack_redis.wait_ready(server)
        devstack_redis.create_cluster(nodes, replicas=0)
        devstack_redis.wait_cluster_ready(nodes)
        standalone = Settings(namespace="benchstate", redis_url=server.url)
        cluster = Settings(
            namespace="benchstate", redis_url=devstack_redis.cluster_url(nodes), redis_cluster=True
        )
        figures = []
        for _ in range(args.rounds):
            figures.append(
                measure_throughput("standalone", standalone, {"server": server.pid}, args)
            )
            masters = {f"master-{i}": node.pid for i, node in enumerate(nodes, start=1)}
            figures.append(measure_throughput("cluster", cluster, masters, args))
        return figures
    finally:
        for pid in [server.pid, *(node.pid for node in nodes)]:
            stop(pid)


# --- report --------------------------------------------------------------------------------
def report(
    memory: list[MemoryFigure],
    before: list[MemoryFigure],
    flows: list[ThroughputFigure],
    args: argparse.Namespace,
) -> str:
    lines = [
        "# kafka-tasks state layer: memory and throughput",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}. Command: `python -m bench.state "
        f"{' '.join(sys.argv[1:])}`.",
        "",
    ]
    if memory:
        lines += ["## Redis memory per task", "", "| task | before | after | after / before |"]
        lines += ["| --- | ---: | ---: | ---: |"]
        earlier = {figure.scenario: figure for figure in before}
        for figure in memory:
            old = earlier.get(figure.scenario)
            ratio = f"{figure.bytes_per_task / old.bytes_per_task:.2f}" if old else "-"
            old_text = f"{old.bytes_per_task:,.0f} B" if old else "-"
            lines.append(
                f"| {figure.scenario} ({figure.tasks} tasks) | {old_text} | "
                f"{figure.bytes_per_task:,.0f} B | {ratio} |"
            )
        lines.append("")
    if flows:
        lines += [
            "## State-write throughput",
            "",
            f"{args.processes} driver processes x {args.concurrency} tasks each, "
            f"{args.seconds:g} s per run; a task = create, confirm, start, complete (4 scripts).",
            "",
            "| run | mode | tasks/s | Redis CPU per task (µs) | driver CPU per task (µs) |",
            "| --- | --- | ---: | --- | ---: |",
        ]
        for index, flow in enumerate(flows):
            cpu = ", ".join(f"{n} {v:.0f}" for n, v in flow.redis_cpu_us_per_task.items())
            lines.append(
                f"| {index // 2 + 1} | {flow.mode} | {flow.tasks_per_second:,.0f} | {cpu} | "
                f"{flow.driver_cpu_us_per_task:.0f} |"
            )
        pairs = list(zip(flows[::2], flows[1::2], strict=True))
        for server, cluster in pairs:
            speedup = cluster.tasks_per_second / server.tasks_per_second
            server_cpu = sum(server.redis_cpu_us_per_task.values())
            master_cpu = list(cluster.redis_cpu_us_per_task.values())
            lines += [
                "",
                f"- cluster / standalone throughput: **{speedup:.2f}** "
                f"({cluster.tasks_per_second:,.0f} / {server.tasks_per_second:,.0f} tasks/s)",
                f"- Redis CPU per task: standalone {server_cpu:.0f} µs; cluster "
                f"{sum(master_cpu):.0f} µs over its masters "
                f"({', '.join(f'{v:.0f}' for v in master_cpu)} µs each)",
                f"- projection, Redis-bound (each master on a core of its own, load spread as "
                f"the shards are): one server {1e6 / server_cpu:,.0f} tasks/s; 3 masters "
                f"{1e6 / max(master_cpu):,.0f} tasks/s (the busiest master saturates first)",
            ]
    if flows:
        lines += [
            "",
            "Per-master CPU is per task of the whole run; a master writes the tasks of its 8 of "
            "the 24 shards, so its CPU per task it wrote is 3x that figure. The projection "
            "assumes: Redis is the bottleneck (API, workers and clients scaled out beside it); "
            "each master has a core of its own and the network adds no CPU; CPU per task stays "
            "what it is at this load (more load batches more per read, so this errs low); task "
            "ids spread evenly over the shards (they are drawn uniformly) and the shards evenly "
            "over the masters; no replicas (a replica costs its master the replication stream); "
            "AOF everysec as here. Listings, dashboard counts and the reaper fan out over every "
            "shard and are not in this workload.",
        ]
    return "\n".join(lines) + "\n"


def plot(
    memory: list[MemoryFigure],
    before: list[MemoryFigure],
    flows: list[ThroughputFigure],
    path: Path,
) -> None:
    """Memory per task before/after, and tasks/s plus Redis CPU per task by mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 5))
    earlier = {figure.scenario: figure.bytes_per_task for figure in before}
    labels = [figure.scenario for figure in memory]
    xs = range(len(labels))
    width = 0.38
    old = [earlier.get(label, 0.0) for label in labels]
    new = [figure.bytes_per_task for figure in memory]
    axes[0].bar([x - width / 2 for x in xs], old, width, label="before", color="#8c8c8c")
    axes[0].bar([x + width / 2 for x in xs], new, width, label="after", color="#1f77b4")
    for x, was, now in zip(xs, old, new, strict=True):
        axes[0].annotate(f"{now:,.0f} B", (x + width / 2, now), ha="center", va="bottom")
        if was:
            axes[0].annotate(f"{was:,.0f} B", (x - width / 2, was), ha="center", va="bottom")
    axes[0].set_xticks(list(xs), [label.replace(", ", ",\n") for label in labels], fontsize=8)
    axes[0].set_ylabel("Redis used_memory per task, bytes")
    axes[0].set_title("Redis memory per task")
    axes[0].legend()

    runs = [f"{figure.mode} #{index // 2 + 1}" for index, figure in enumerate(flows)]
    rates = [figure.tasks_per_second for figure in flows]
    colors = ["#8c8c8c" if figure.mode == "standalone" else "#1f77b4" for figure in flows]
    axes[1].bar(range(len(runs)), rates, color=colors)
    for x, figure in enumerate(flows):
        cpu = "\n".join(f"{n} {v:.0f} µs" for n, v in figure.redis_cpu_us_per_task.items())
        axes[1].annotate(
            f"{figure.tasks_per_second:,.0f}/s\n{cpu}",
            (x, figure.tasks_per_second),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axes[1].set_xticks(list(range(len(runs))), runs)
    axes[1].set_ylabel("tasks/s (4 state scripts each)")
    axes[1].set_title("state-write throughput; Redis CPU per task by server")
    if rates:
        axes[1].set_ylim(0, max(rates) * 1.45)
    fig.suptitle(f"kafka-tasks state layer — {machine()}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.state", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per throughput run")
    parser.add_argument("--rounds", type=int, default=2, help="standalone + cluster pairs")
    parser.add_argument("--processes", type=int, default=2, help="driver processes")
    parser.add_argument("--concurrency", type=int, default=32, help="tasks per process")
    parser.add_argument("--tasks", type=int, default=2000, help="noop tasks for memory")
    parser.add_argument("--sleep-tasks", type=int, default=500, help="sleep tasks for memory")
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO_ROOT,
        help="checkout whose API and worker the memory run uses (its own .venv)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout (its own .venv), e.g. a worktree of main: its memory figures, "
        "measured first in the same run, are the 'before' column",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a state.json of an earlier run (e.g. --source at the previous version): its "
        "memory figures are the 'before' column",
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]bench-state[/]: everything under {stack.short_path(HOME)}")
    before: list[MemoryFigure] = []
    if args.before is not None:
        earlier = json.loads(args.before.read_text())
        before = [MemoryFigure(**figure) for figure in earlier["memory"]]
    if args.baseline is not None and not args.skip_memory:
        console.print(f"[bold]memory, before[/]: {args.baseline}")
        before = measure_memory(args.baseline, args.tasks, args.sleep_tasks)
    if not args.skip_memory:
        console.print(f"[bold]memory, after[/]: {args.source}")
    memory = [] if args.skip_memory else measure_memory(args.source, args.tasks, args.sleep_tasks)
    flows = [] if args.skip_throughput else throughput(args)
    results = {
        "memory": [asdict(m) for m in memory],
        "before": [asdict(m) for m in before],
        "throughput": [asdict(f) for f in flows],
    }
    name = "state" if args.source == REPO_ROOT else "state-source"
    (OUT / f"{name}.json").write_text(json.dumps(results, indent=2))
    (OUT / f"{name}.md").write_text(report(memory, before, flows, args))
    plot(memory, before, flows, OUT / f"{name}.png")
    console.print(f"wrote {stack.short_path(OUT / f'{name}.md')}, {name}.png, {name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
