"""Runs many messages at once per worker process while acknowledging them in offset order."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from services.core import metrics
from services.core.logs import get_logger
from services.core.priorities import DEFAULT_WEIGHTS, Priority
from services.worker.offsets import OffsetTracker, Partition
from services.worker.slots import WeightedSlots

log = get_logger(__name__)

Handler = Callable[[bytes, str], Awaitable[None]]
"""Called with the message's value and its position, ``topic/partition/offset``."""


class Event(Protocol):
    """The part of a faust event the dispatcher uses."""

    @property
    def message(self) -> Any: ...

    @property
    def value(self) -> Any: ...

    def ack(self) -> bool: ...


class Dispatcher:
    """Hands each message to ``handler`` in its own asyncio task, at most ``concurrency`` at
    once, and acknowledges a message only when it and every earlier message of its partition
    have finished (so a committed offset never passes an unfinished task). Slots are shared
    between priority topics by weight (``priorities``: topic -> priority; others default)."""

    def __init__(
        self,
        handler: Handler,
        *,
        concurrency: int,
        track_in_flight: bool,
        priorities: Mapping[str, Priority] | None = None,
        weights: Mapping[Priority, int] = DEFAULT_WEIGHTS,
    ) -> None:
        self._handler = handler
        self._priorities = dict(priorities or {})
        self._slots = WeightedSlots(concurrency, weights)
        self._tracker: OffsetTracker[Event] = OffsetTracker()
        self._running: dict[Partition, set[asyncio.Task[None]]] = defaultdict(set)
        self._track = track_in_flight
        self._closing = False

    @property
    def in_flight(self) -> int:
        return sum(len(tasks) for tasks in self._running.values())

    async def dispatch(self, event: Event) -> None:
        """Start handling ``event``; waits first while at the limit, which is what keeps a
        worker from fetching more than it can run."""
        topic: str = event.message.topic
        await self._slots.acquire(self._priorities.get(topic, Priority.DEFAULT))
        partition: Partition = (topic, event.message.partition)
        offset: int = event.message.offset
        self._tracker.started(partition, offset, event)
        if self._closing:
            # Never acknowledged: the next owner of the partition gets it.
            self._slots.release()
            return
        task = asyncio.create_task(self._run(event, partition, offset))
        running = self._running[partition]
        running.add(task)
        if self._track:
            metrics.TASKS_IN_FLIGHT.inc()
        # A callback, not a ``finally`` in ``_run``: a task cancelled before its first step
        # never runs its body, and its slot and gauge would leak.
        task.add_done_callback(lambda done: self._finished(done, running))

    def _finished(self, task: asyncio.Task[None], running: set[asyncio.Task[None]]) -> None:
        running.discard(task)
        self._slots.release()
        if self._track:
            metrics.TASKS_IN_FLIGHT.dec()

    async def _run(self, event: Event, partition: Partition, offset: int) -> None:
        try:
            await self._handler(event.value, f"{partition[0]}/{partition[1]}/{offset}")
        except asyncio.CancelledError:
            raise  # stopping: the message stays unacknowledged and will be delivered again
        except Exception:
            # Handlers store every task error and wait out every outage themselves; reaching
            # here is a worker bug. It is logged and counted, and the message acknowledged
            # like any other: holding it back would hold back its whole partition forever.
            metrics.WORKER_ERRORS.labels("dispatcher").inc()
            log.exception("unexpected error while handling a message", offset=offset)
        for ready in self._tracker.finished(partition, offset):
            ready.ack()

    async def revoked(self, partitions: set[Partition], *, grace_seconds: float) -> None:
        """Partitions are leaving this worker: give their running tasks up to ``grace_seconds``
        to finish (so they are committed, not run again elsewhere), cancel the rest (the new
        owner runs them again) and forget the partitions."""
        tasks = {task for p in partitions for task in self._running.get(p, ())}
        await _finish_or_cancel(tasks, grace_seconds)
        self._tracker.forget(partitions)

    async def close(self, *, grace_seconds: float) -> bool:
        """Stop starting messages; wait up to ``grace_seconds`` for running ones, then cancel
        the rest (their messages are redelivered). True if all finished in time."""
        self._closing = True
        tasks = {task for running in self._running.values() for task in running}
        return await _finish_or_cancel(tasks, grace_seconds)


async def _finish_or_cancel(tasks: set[asyncio.Task[None]], grace_seconds: float) -> bool:
    """Wait up to ``grace_seconds`` for ``tasks``; cancel those still running. True if none
    had to be cancelled."""
    if not tasks:
        return True
    log.info("waiting for running messages", count=len(tasks), grace_seconds=grace_seconds)
    _, pending = (
        await asyncio.wait(tasks, timeout=grace_seconds)
        if grace_seconds > 0
        else (
            set(),
            {t for t in tasks if not t.done()},
        )
    )
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    return not pending
