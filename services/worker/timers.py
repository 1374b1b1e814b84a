"""The timer loop: queues held-back tasks once they are due (delays, rate and concurrency
limits). Every worker runs it; releasing a task is atomic (one script), so one worker
publishes it.

Nothing waits in memory and no partition is held: the due times live in Redis (a sorted set
written with the task's record), so a delayed task survives worker restarts and rebalances,
and any live worker queues it within ``timer_interval_seconds`` of its due time. A released
task gets a publication deadline, confirmed once the broker has its message: should the
releasing worker die in between, the reaper publishes it.
"""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

from services.core import metrics
from services.core.errors import BackendUnavailableError
from services.core.logs import get_logger
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.core.states import TaskState
from services.core.store import TaskStore

log = get_logger(__name__)

BATCH = 500
"""Due tasks one pass releases at most (the next pass, a tick later, takes the rest)."""
PARALLEL = 32
"""Releases and publications one pass runs at once."""


class TimerLoop:
    def __init__(self, store: TaskStore, publisher: TaskPublisher, settings: Settings) -> None:
        self._store = store
        self._publisher = publisher
        self._settings = settings
        self._parallel = asyncio.Semaphore(PARALLEL)

    async def tick(self) -> int:
        """One pass; returns how many tasks it queued."""
        due = await self._store.due_timers(limit=BATCH)
        if not due:
            return 0
        outcomes = await asyncio.gather(*(self._queue(task_id) for task_id in due))
        return sum(outcomes)

    async def _queue(self, task_id: UUID) -> bool:
        async with self._parallel:
            released = await self._store.release(task_id)
            if released is None:
                return False  # another worker took it, or it settled meanwhile
            message = released.message
            topic = self._settings.task_topic(message.task, message.priority)
            try:
                position = await self._publisher.publish(topic, message, key=str(message.id))
            except BackendUnavailableError as error:
                log.warning(
                    "could not queue a due task; the reaper will",
                    task_id=str(task_id),
                    reason=error.reason,
                )
                return False
            if released.status is TaskState.PENDING:
                await self._store.confirm_published(message.id, position=position)
            metrics.TASKS_RELEASED.labels(message.task).inc()
            metrics.DELAY_LATENESS.observe(max(time.time() - released.due_at, 0.0))
            return True
