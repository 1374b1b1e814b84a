"""The dispatcher on its own: slots, the in-flight gauge and acknowledgements when tasks are
cancelled or fail in ways the handler did not expect."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.core import metrics
from services.worker.dispatcher import Dispatcher


@dataclass
class Message:
    topic: str
    partition: int
    offset: int


@dataclass
class Event:
    message: Message
    value: bytes = b"{}"
    acked: list[int] = field(default_factory=list)

    def ack(self) -> bool:
        self.acked.append(self.message.offset)
        return True


def events(count: int, *, partition: int = 0) -> list[Event]:
    return [Event(Message("t", partition, offset)) for offset in range(count)]


def in_flight_gauge() -> float:
    return float(metrics.TASKS_IN_FLIGHT._value.get())


async def test_tasks_cancelled_before_they_started_give_back_their_slots() -> None:
    async def handler(value: bytes, delivery: str) -> None:
        await asyncio.Event().wait()

    dispatcher = Dispatcher(handler, concurrency=2, track_in_flight=True)
    gauge = in_flight_gauge()
    first = events(2)
    for event in first:
        await dispatcher.dispatch(event)
    # A rebalance with no grace, before either task got to run a single step.
    await dispatcher.revoked({("t", 0)}, grace_seconds=0)

    assert dispatcher.in_flight == 0
    assert in_flight_gauge() == gauge
    later = events(2, partition=1)
    async with asyncio.timeout(2):  # both slots are free again: dispatch does not wait
        for event in later:
            await dispatcher.dispatch(event)
    await dispatcher.close(grace_seconds=0)
    assert in_flight_gauge() == gauge


async def test_an_unexpected_handler_error_never_holds_back_its_partition() -> None:
    async def handler(value: bytes, delivery: str) -> None:
        if delivery.endswith("/1"):
            raise RuntimeError("a bug in the worker")

    dispatcher = Dispatcher(handler, concurrency=4, track_in_flight=False)
    batch = events(4)
    for event in batch:
        await dispatcher.dispatch(event)
    await dispatcher.close(grace_seconds=5)

    assert [offset for event in batch for offset in event.acked] == [0, 1, 2, 3]
