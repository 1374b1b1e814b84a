"""The load shapes' arithmetic, the task-mix notation and the pass/fail rules."""

from __future__ import annotations

import pytest

from loadtest.profiles import SPIKE_USERS, Params, parse_weights, spike, steady, step_ramp
from loadtest.thresholds import judge, merge, percentile

P = Params(users=50, spawn_rate=10, duration=30)


def test_steady_holds_the_users_until_the_duration() -> None:
    assert steady(0, P) == (50, 10)
    assert steady(29.9, P) == (50, 10)
    assert steady(30, P) is None


def test_step_ramp_climbs_in_equal_steps_to_the_users() -> None:
    counts = [step_ramp(t, P) for t in (0, 6, 12, 18, 24, 29.9)]
    assert [c[0] for c in counts if c] == [10, 20, 30, 40, 50, 50]
    assert step_ramp(30, P) is None


def test_spike_goes_to_a_thousand_users_in_the_middle_third_and_back() -> None:
    assert spike(5, P) == (50, SPIKE_USERS / 5)
    middle = spike(15, P)
    assert middle is not None
    assert middle[0] == SPIKE_USERS
    assert middle[1] >= SPIKE_USERS / 5  # reached within about five seconds
    assert spike(25, P) == (50, SPIKE_USERS / 5)
    assert spike(30, P) is None


def test_parameters_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Params(users=0, spawn_rate=1, duration=1)


def test_weights_notation() -> None:
    assert parse_weights("noop:5, sleep:3,fail", {"noop", "sleep", "fail"}) == {
        "noop": 5,
        "sleep": 3,
        "fail": 1,
    }
    with pytest.raises(ValueError, match="unknown name"):
        parse_weights("nope:1", {"noop"})
    with pytest.raises(ValueError, match="no positive weight"):
        parse_weights("noop:0", {"noop"})


def test_percentile_follows_locusts_histogram_definition() -> None:
    histogram = {10: 98, 20: 1, 500: 1}
    assert percentile(histogram, 0.98) == 10
    assert percentile(histogram, 0.99) == 20
    assert percentile(histogram, 1.0) == 500
    assert percentile({}, 0.99) is None
    assert merge([{10: 1}, {10: 2, 30: 1}]) == {10: 3, 30: 1}


def test_judge_fails_on_either_threshold_and_passes_otherwise() -> None:
    fine = judge(
        requests=1000, failures=5, task_latency={80: 100}, max_fail_ratio=0.01, max_p99_ms=100
    )
    assert fine.ok
    assert fine.lines[-1] == "PASS"
    too_many = judge(
        requests=100, failures=5, task_latency={80: 100}, max_fail_ratio=0.01, max_p99_ms=None
    )
    assert not too_many.ok
    assert "failure ratio" in too_many.lines[-1]
    too_slow = judge(
        requests=100, failures=0, task_latency={80: 98, 900: 2}, max_fail_ratio=None, max_p99_ms=100
    )
    assert not too_slow.ok
    assert "p99 900 ms > 100 ms" in too_slow.lines[-1]
    nothing = judge(requests=0, failures=0, task_latency={}, max_fail_ratio=None, max_p99_ms=None)
    assert not nothing.ok
