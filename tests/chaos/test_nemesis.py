"""The nemesis's plan: a pure function of the seed, with every kind of fault, overlapping; and
its scheduling: no target is struck by two faults at once, even when one is delayed."""

from __future__ import annotations

import asyncio
import random
import signal

from chaos.nemesis import BROKERS, WORKERS, Fault, FaultKind, Nemesis, plan


def test_a_seed_replays_the_same_faults_and_another_seed_does_not() -> None:
    assert plan(7, 600) == plan(7, 600)
    assert plan(7, 600) != plan(8, 600)


def test_a_ten_minute_plan_has_every_kind_overlapping_and_healed_before_the_end() -> None:
    faults = plan(20261130, 600, longest=60)
    assert {fault.kind for fault in faults} == set(FaultKind)
    assert all(2 <= fault.length <= 60 for fault in faults)
    assert all(fault.end <= 600 - 15 for fault in faults)
    overlapping = [
        (a, b) for a in faults for b in faults if a.number < b.number and b.start < a.end
    ]
    assert overlapping, "faults must also happen at the same time"


def test_no_target_is_held_by_two_faults_at_once() -> None:
    for seed in range(20):
        faults = plan(seed, 600)
        for a in faults:
            for b in faults:
                if a.number < b.number and b.start < a.end:
                    assert not set(a.targets) & set(b.targets), (seed, a, b)
        for fault in faults:
            if fault.kind is FaultKind.KAFKA_DOWN:
                assert fault.targets == BROKERS


class StandInCluster:
    """The cluster's bookkeeping without processes: what the nemesis's scheduling needs."""

    def __init__(self) -> None:
        self.held: set[str] = set()

    def signal(self, target: str, sig: signal.Signals) -> None:
        self.held.add(target)

    def wait_gone(self, target: str) -> None:
        pass

    def restart_until_up(self, targets: list[str]) -> None:
        self.held.difference_update(targets)

    def release(self, target: str) -> None:
        self.held.discard(target)

    async def retrying(self) -> str | None:
        await asyncio.sleep(0.3)  # a task reaches RETRY only after a while
        return "a-task"


async def test_a_fault_waiting_to_strike_keeps_its_targets_from_another_fault() -> None:
    """Seed 16180: a workers-restart-during-retry fault waits for a task in retry before its
    SIGTERM marks the workers held; a worker-kill due meanwhile on worker-2 started too, and
    the two restarted worker-2 under each other (one counted a death)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    nemesis = Nemesis(
        StandInCluster(),  # type: ignore[arg-type]
        workload=None,  # type: ignore[arg-type]
        clock=lambda: loop.time() - started,
        rng=random.Random(1),
    )
    await nemesis.run(
        [
            Fault(1, FaultKind.WORKERS_RESTART_DURING_RETRY, WORKERS, start=0.0, length=0.5),
            Fault(2, FaultKind.WORKER_KILL, ("worker-2",), start=0.1, length=0.5),
        ]
    )
    restart, kill = nemesis.injected
    assert restart.healed is not None
    assert kill.started is not None
    assert kill.started >= restart.healed  # waited for the workers to be back
    assert nemesis.claimed == set()
