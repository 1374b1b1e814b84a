"""The nemesis's plan: a pure function of the seed, with every kind of fault, overlapping."""

from __future__ import annotations

from chaos.nemesis import BROKERS, FaultKind, plan


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
