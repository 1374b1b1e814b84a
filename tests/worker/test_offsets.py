"""The contiguous-finished-prefix rule, checked exhaustively with hypothesis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.worker.offsets import OffsetTracker

P = ("topic", 0)


@given(st.permutations(list(range(30))))
def test_items_are_released_in_offset_order_and_only_after_all_earlier_ones(
    finish_order: list[int],
) -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    for offset in range(30):
        tracker.started(P, offset, offset)
    finished: set[int] = set()
    released: list[int] = []
    for offset in finish_order:
        finished.add(offset)
        now = tracker.finished(P, offset)
        released += now
        # Everything released so far is finished, and nothing unfinished precedes it.
        assert set(released) <= finished
        assert released == list(range(len(released)))
        expected_next = tracker.committable(P)
        assert expected_next is None or expected_next not in finished
    assert released == list(range(30))
    assert tracker.in_flight() == 0


def test_a_slow_first_message_holds_back_the_whole_partition() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.started(P, offset, f"m{offset}")
    assert tracker.finished(P, 7) == []
    assert tracker.finished(P, 6) == []
    assert tracker.committable(P) == 5
    assert tracker.finished(P, 5) == ["m5", "m6", "m7"]


def test_partitions_are_independent_and_revoked_ones_are_forgotten() -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    other = ("topic", 1)
    tracker.started(P, 0, 0)
    tracker.started(other, 0, 100)
    assert tracker.finished(other, 0) == [100]
    tracker.forget({P})
    assert tracker.finished(P, 0) == []


def test_a_rewound_partition_starts_a_fresh_window() -> None:
    tracker: OffsetTracker[int] = OffsetTracker()
    tracker.started(P, 10, 10)
    tracker.started(P, 11, 11)
    tracker.started(P, 10, 1010)  # redelivered after a seek
    assert tracker.finished(P, 11) == []  # the stale entry is gone
    assert tracker.finished(P, 10) == [1010]
