"""Runs many tasks at once per worker process while acknowledging messages in offset order."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from services.core.logs import get_logger
from services.worker.offsets import OffsetTracker, Partition
from services.worker.runner import TaskRunner

log = get_logger(__name__)


class Event(Protocol):
    """The part of a faust event the dispatcher uses."""

    @property
    def message(self) -> Any: ...

    @property
    def value(self) -> Any: ...

    def ack(self) -> bool: ...


class Dispatcher:
    def __init__(self, runner: TaskRunner, *, concurrency: int) -> None:
        self._runner = runner
        self._slots = asyncio.Semaphore(concurrency)
        self._tracker: OffsetTracker[Event] = OffsetTracker()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def dispatch(self, event: Event) -> None:
        """Start running ``event``'s task; waits first while the worker is at its limit, which
        is what keeps a worker from fetching more than it can run."""
        await self._slots.acquire()
        partition: Partition = (event.message.topic, event.message.partition)
        offset: int = event.message.offset
        self._tracker.started(partition, offset, event)
        task = asyncio.create_task(self._run(event, partition, offset))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, event: Event, partition: Partition, offset: int) -> None:
        try:
            await self._runner.run(event.value)
        except Exception:
            # TaskRunner stores every task error itself; reaching here is a bug in the worker,
            # and the message is still acknowledged only once earlier ones have finished.
            log.exception("unexpected error while running a task", offset=offset)
        finally:
            for ready in self._tracker.finished(partition, offset):
                ready.ack()
            self._slots.release()

    def revoked(self, partitions: set[Partition]) -> None:
        self._tracker.forget(partitions)

    async def drain(self, grace_seconds: float) -> bool:
        """Wait up to ``grace_seconds`` for running tasks; True if all finished."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        return not pending
