"""The context handed to task code: progress reports, the attempt number, cancellation."""

from __future__ import annotations

import asyncio
from uuid import UUID

from pydantic import JsonValue

from services.core.errors import BackendUnavailableError, InvalidTransitionError, TaskCancelled
from services.core.logs import get_logger
from services.core.models import Progress
from services.core.states import TaskState
from services.core.store import TaskStore

log = get_logger(__name__)


class WorkerTaskContext:
    def __init__(
        self, store: TaskStore, task_id: UUID, attempt: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._store = store
        self._task_id = task_id
        self._attempt = attempt
        self._loop = loop

    @property
    def task_id(self) -> str:
        return str(self._task_id)

    @property
    def attempt(self) -> int:
        return self._attempt

    async def progress(
        self, percent: float, message: str = "", meta: dict[str, JsonValue] | None = None
    ) -> None:
        """Store a progress report; raises TaskCancelled if the task was cancelled.

        Progress is best effort: while Redis is unreachable the report is dropped (and
        logged) rather than failing the task; the outcome itself is stored with retries.
        """
        try:
            await self._store.transition(
                self._task_id,
                TaskState.PROGRESS,
                progress=Progress(percent=percent, message=message, meta=meta),
            )
        except InvalidTransitionError as refused:
            if refused.current == TaskState.CANCELLED:
                raise TaskCancelled(self.task_id) from None
            raise
        except BackendUnavailableError as error:
            log.warning("progress report dropped: redis unavailable", reason=error.reason)

    async def cancelled(self) -> bool:
        return (await self._store.get(self._task_id)).status is TaskState.CANCELLED

    def progress_sync(
        self, percent: float, message: str = "", meta: dict[str, JsonValue] | None = None
    ) -> None:
        """From a sync task running in the worker's thread pool."""
        future = asyncio.run_coroutine_threadsafe(self.progress(percent, message, meta), self._loop)
        future.result()

    def cancelled_sync(self) -> bool:
        return asyncio.run_coroutine_threadsafe(self.cancelled(), self._loop).result()
