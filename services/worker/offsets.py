"""Per-partition tracking of in-flight messages, so offsets advance only over finished tasks.

Tasks finish out of order when a worker runs many at once. Kafka commits one offset per
partition meaning "everything before this is done", so a message may be acknowledged only once
every earlier message of its partition has finished: the contiguous finished prefix. faust's
own gap handling has had bugs, so faust is only ever handed acks in offset order.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
Partition = tuple[str, int]


@dataclass
class _PartitionWindow(Generic[T]):
    # offset -> (item, finished); insertion order is offset order because Kafka delivers a
    # partition's messages in order.
    entries: OrderedDict[int, tuple[T, bool]] = field(default_factory=OrderedDict)


class OffsetTracker(Generic[T]):
    def __init__(self) -> None:
        self._windows: dict[Partition, _PartitionWindow[T]] = {}

    def started(self, partition: Partition, offset: int, item: T) -> None:
        window = self._windows.setdefault(partition, _PartitionWindow())
        if window.entries and offset <= next(reversed(window.entries)):
            # The consumer was moved back (a seek after a rebalance): what was in flight will
            # be delivered again, so its acknowledgements no longer mean anything.
            window.entries.clear()
        window.entries[offset] = (item, False)

    def finished(self, partition: Partition, offset: int) -> list[T]:
        """Mark one message finished; returns the items now safe to acknowledge, in order."""
        window = self._windows.get(partition)
        if window is None or offset not in window.entries:
            return []  # the partition was revoked or rewound while this task ran
        item, _ = window.entries[offset]
        window.entries[offset] = (item, True)
        released: list[T] = []
        while window.entries:
            first_offset, (first_item, done) = next(iter(window.entries.items()))
            if not done:
                break
            del window.entries[first_offset]
            released.append(first_item)
        return released

    def forget(self, partitions: set[Partition]) -> None:
        """Drop revoked partitions: their unfinished messages go to the next owner."""
        for partition in partitions:
            self._windows.pop(partition, None)

    def in_flight(self) -> int:
        return sum(len(w.entries) for w in self._windows.values())

    def committable(self, partition: Partition) -> int | None:
        """The offset Kafka may commit for ``partition`` (the first unfinished one), if known."""
        window = self._windows.get(partition)
        if not window or not window.entries:
            return None
        return next(iter(window.entries))
