"""The nemesis: a seeded schedule of faults, and their injection into the running cluster.

The plan is a pure function of the seed, the run's length and the longest fault: the same
seed replays the same faults at the same moments on the same targets. Faults overlap; a fault
whose targets another one holds at that moment is left out of the plan.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from chaos.cluster import ChaosCluster
from chaos.workload import Workload

BROKERS = ("broker-1", "broker-2", "broker-3")
WORKERS = ("worker-1", "worker-2", "worker-3")
APIS = ("api-1", "api-2")
BURST = 30
"""Submissions sent to an API process just before it is killed."""
HELD_WAIT_SECONDS = 120
"""How long a fault waits for a target that another fault still holds before it is left out."""


class FaultKind(StrEnum):
    REDIS_KILL = "redis-kill"
    """Redis SIGKILLed, started again on its AOF after the fault's length."""
    REDIS_PAUSE = "redis-pause"
    """Redis SIGSTOPped, then SIGCONT: requests time out instead of being refused."""
    BROKER_KILL = "broker-kill"
    BROKER_PAUSE = "broker-pause"
    KAFKA_DOWN = "kafka-down"
    """All three brokers SIGKILLed, started again together."""
    WORKER_KILL = "worker-kill"
    WORKER_TERM = "worker-term"
    """SIGTERM: a graceful stop (running tasks get the shutdown grace), then a new process."""
    API_KILL = "api-kill"
    """An API process SIGKILLed in the middle of a burst of submissions sent to it."""
    WORKERS_RESTART_DURING_RETRY = "workers-restart-during-retry"
    """Every worker stopped (SIGTERM) while a task waits for its retry, then started again."""


def _targets_of(
    kind: FaultKind, busy_until: dict[str, float], at: float, rng: random.Random
) -> list[str]:
    """The targets a fault of ``kind`` would take at ``at``, or [] if they are not free."""

    def free(target: str) -> bool:
        return busy_until.get(target, 0.0) <= at

    if kind in (FaultKind.REDIS_KILL, FaultKind.REDIS_PAUSE):
        return ["redis"] if free("redis") else []
    if kind in (FaultKind.BROKER_KILL, FaultKind.BROKER_PAUSE):
        choices = [b for b in BROKERS if free(b)]
        return [rng.choice(choices)] if choices else []
    if kind is FaultKind.KAFKA_DOWN:
        return list(BROKERS) if all(map(free, BROKERS)) else []
    if kind in (FaultKind.WORKER_KILL, FaultKind.WORKER_TERM):
        choices = [w for w in WORKERS if free(w)]
        return [rng.choice(choices)] if choices else []
    if kind is FaultKind.API_KILL:
        # One API at a time: the other keeps taking the workload.
        return [rng.choice(APIS)] if all(map(free, APIS)) else []
    return list(WORKERS) if all(map(free, WORKERS)) else []


@dataclass(frozen=True)
class Fault:
    number: int
    kind: FaultKind
    targets: tuple[str, ...]
    start: float
    """Seconds since the run started."""
    length: float

    @property
    def end(self) -> float:
        return self.start + self.length

    def describe(self) -> str:
        return f"#{self.number} {self.kind} on {', '.join(self.targets)}"


def plan(
    seed: int,
    duration: float,
    *,
    longest: float = 60.0,
    mean_gap: float | None = None,
    quiet_tail: float = 15.0,
) -> list[Fault]:
    """Faults over ``duration`` seconds, each 2 to ``longest`` seconds long, arriving every
    ``mean_gap`` seconds on average (default: a third of ``longest``, at least 10 s: about
    1.5 faults at once, so some are alone and some overlap), all healed ``quiet_tail``
    seconds before the end. The first faults go through every kind once, in a seeded order."""
    mean_gap = mean_gap or max(10.0, longest / 3)
    rng = random.Random(seed)
    kinds = list(FaultKind)
    rng.shuffle(kinds)
    busy_until: dict[str, float] = {}
    faults: list[Fault] = []
    moment = 5.0
    while True:
        moment += rng.expovariate(1 / mean_gap)
        room = duration - quiet_tail - moment
        if room < 2:
            return faults
        kind = kinds[len(faults)] if len(faults) < len(kinds) else rng.choice(list(FaultKind))
        targets = _targets_of(kind, busy_until, moment, rng)
        if not targets:
            continue
        length = rng.uniform(2.0, min(longest, room))
        for target in targets:
            busy_until[target] = moment + length + 2.0  # and a moment to come back
        faults.append(Fault(len(faults) + 1, kind, tuple(targets), moment, length))


@dataclass
class Injected:
    fault: Fault
    started: float | None = None
    struck: float | None = None
    """When the signal went out (an API kill comes after its burst is on its way)."""
    gone: float | None = None
    """When a killed or stopped target's process was seen to have exited."""
    healed: float | None = None
    note: str = ""


@dataclass
class Nemesis:
    cluster: ChaosCluster
    workload: Workload
    clock: Callable[[], float]
    rng: random.Random
    injected: list[Injected] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)
    """Targets of the faults under way, from their start to their heal: a fault can wait
    (for a task in retry, a burst) before its signal marks the target held, and another
    fault on the same target must not start meanwhile."""

    async def run(self, faults: list[Fault]) -> None:
        """Inject every planned fault at its moment; returns when all are healed."""
        self.injected = [Injected(fault) for fault in faults]
        await asyncio.gather(*(self._play(item) for item in self.injected))

    def active(self) -> int:
        return sum(1 for i in self.injected if i.started is not None and i.healed is None)

    async def _play(self, item: Injected) -> None:
        fault = item.fault
        await asyncio.sleep(max(0.0, fault.start - self.clock()))
        # A target another fault still holds (its restart is slower than the plan assumed:
        # a broker waiting for its quorum, a worker for Kafka) is waited for.
        # (Polled: restarts release their targets from worker threads.)
        for waited in itertools.count():
            taken = self.cluster.held | self.claimed
            if not any(target in taken for target in fault.targets):
                break
            if waited * 0.2 > HELD_WAIT_SECONDS:
                item.note = f"left out: a target was still held after {HELD_WAIT_SECONDS} s"
                return
            await asyncio.sleep(0.2)
        self.claimed.update(fault.targets)
        try:
            item.started = self.clock()
            if item.started - fault.start > 1:
                item.note = f"delayed {item.started - fault.start:.0f} s: a target was still held"
            resume = await self._inject(item)
            await asyncio.sleep(max(0.0, item.started + fault.length - self.clock()))
            await resume()
            item.healed = self.clock()
        finally:
            self.claimed.difference_update(fault.targets)

    async def _inject(self, item: Injected) -> Callable[[], asyncio.Future[None]]:
        """Apply the fault; returns what heals it."""
        cluster, fault, kind = self.cluster, item.fault, item.fault.kind
        targets = list(fault.targets)
        if kind in (FaultKind.REDIS_PAUSE, FaultKind.BROKER_PAUSE):
            item.struck = self.clock()
            cluster.signal(targets[0], signal.SIGSTOP)
            return lambda: self._resume(targets)
        if kind is FaultKind.API_KILL:
            self.workload.burst(targets[0], BURST)
            await asyncio.sleep(self.rng.uniform(0.02, 0.3))  # some answered, some not
        elif kind is FaultKind.WORKERS_RESTART_DURING_RETRY:
            item.note = " ".join([item.note, await self._wait_for_a_waiting_retry()]).strip()
        sig = (
            signal.SIGTERM
            if kind in (FaultKind.WORKER_TERM, FaultKind.WORKERS_RESTART_DURING_RETRY)
            else signal.SIGKILL
        )
        item.struck = self.clock()
        for target in targets:
            cluster.signal(target, sig)
        for target in targets:
            await asyncio.to_thread(cluster.wait_gone, target)
        item.gone = self.clock()
        return lambda: self._restart(targets)

    def _resume(self, targets: list[str]) -> asyncio.Future[None]:
        for target in targets:
            self.cluster.signal(target, signal.SIGCONT)
            self.cluster.release(target)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def _restart(self, targets: list[str]) -> asyncio.Future[None]:
        return asyncio.ensure_future(asyncio.to_thread(self.cluster.restart_until_up, targets))

    async def _wait_for_a_waiting_retry(self) -> str:
        """Until a task is in RETRY (the workload submits flaky ones all the time), at most
        30 s; says which one was waiting."""
        for _ in range(300):
            waiting = await self.cluster.retrying()
            if waiting:
                return f"while task {waiting} waited for its retry"
            await asyncio.sleep(0.1)
        return "no task was waiting for a retry within 30 s"
