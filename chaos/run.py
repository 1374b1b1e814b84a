"""One chaos run: start the cluster, play the workload and the nemesis together, let the
platform settle, take a snapshot and check it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chaos.checker import ApiKill, check
from chaos.cluster import ChaosCluster, answer_bounds
from chaos.nemesis import FaultKind, Nemesis, plan
from chaos.report import Run
from chaos.snapshot import settle, take
from chaos.workload import Workload
from devstack import stack
from services.core.models import utcnow

OUT = stack.REPO_ROOT / "build" / "chaos"


@dataclass(frozen=True)
class Options:
    seed: int
    duration: float
    """Seconds of workload (faults heal before its end)."""
    longest: float = 60.0
    """The longest a fault lasts."""
    rate: float = 6.0
    """Requests per second."""
    settle: float = 240.0
    """How long the platform may take to finish every task once the workload stopped."""
    out: Path = OUT


Progress = Callable[[float, str], None]
"""Told how far the run is (seconds) and what it does now."""


async def run(options: Options, progress: Progress | None = None) -> Run:
    tell = progress or (lambda at, what: None)
    namespace = f"chaos-{options.seed}"[:40]
    tell(0, "starting 3 brokers, Redis, 2 APIs and 3 workers")
    cluster = await asyncio.to_thread(ChaosCluster.start, namespace)
    try:
        started, started_wall = time.monotonic(), utcnow()

        def clock() -> float:
            return time.monotonic() - started

        faults = plan(options.seed, options.duration, longest=options.longest)
        bounds = answer_bounds()
        async with Workload(
            random.Random(options.seed * 2 + 1),
            cluster.api_urls,
            clock,
            options.rate,
            answer_timeout=max(bounds.values()) + 20,
        ) as workload:
            nemesis = Nemesis(cluster, workload, clock, random.Random(options.seed * 2 + 2))
            watching = asyncio.create_task(_watch(cluster))
            reporting = asyncio.create_task(_report(tell, clock, workload, nemesis))
            try:
                await asyncio.gather(workload.run(until=options.duration), nemesis.run(faults))
                await workload.drain()
                tell(clock(), "settling: waiting for every task to finish")
                settled = await settle(cluster.state.redis_url, namespace, within=options.settle)
                settle_seconds = clock() - options.duration
            finally:
                for task in (watching, reporting):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        tell(clock(), "reading every record, history and dead letter")
        snapshot = await take(
            cluster.state.redis_url,
            cluster.state.bootstrap_servers,
            namespace,
            next(iter(cluster.api_urls.values())),
        )
        api_kills = [
            ApiKill(target, item.struck, item.gone)
            for item in nemesis.injected
            if item.fault.kind is FaultKind.API_KILL
            and item.struck is not None
            and item.gone is not None
            for target in item.fault.targets
        ]
        verdict = check(
            workload.ops,
            snapshot,
            bounds=bounds,
            deaths=[(d.at, d.target, d.log_tail) for d in cluster.deaths],
            api_kills=api_kills,
            settled=settled,
        )
        return Run(
            options.seed,
            options.duration,
            options.longest,
            started_wall,
            workload.ops,
            nemesis.injected,
            snapshot,
            verdict,
            settle_seconds,
        )
    finally:
        await asyncio.to_thread(cluster.close)
        await asyncio.to_thread(cluster.keep_logs, options.out / "logs")


async def _watch(cluster: ChaosCluster) -> None:
    while True:
        await asyncio.to_thread(cluster.watch)
        await asyncio.sleep(0.5)


async def _report(
    tell: Progress, clock: Callable[[], float], workload: Workload, nemesis: Nemesis
) -> None:
    while True:
        accepted = sum(1 for op in workload.ops if op.status == 202)
        tell(
            clock(),
            f"{len(workload.ops)} requests, {accepted} accepted, {workload.in_flight} in "
            f"flight, {nemesis.active()} fault(s) active",
        )
        await asyncio.sleep(1)
