"""The context handed to task code: progress reports, the attempt number, cancellation."""

from __future__ import annotations

import asyncio
from uuid import UUID

from pydantic import JsonValue

from services.core.errors import (
    AttemptSuperseded,
    BackendUnavailableError,
    InvalidTransitionError,
    StaleAttemptError,
    TaskCancelled,
)
from services.core.logs import get_logger
from services.core.models import Progress
from services.core.states import TaskState
from services.core.store import TaskStore
from services.worker.leases import LeaseKeeper

log = get_logger(__name__)


class WorkerTaskContext:
    def __init__(
        self,
        store: TaskStore,
        leases: LeaseKeeper,
        task_id: UUID,
        task: str,
        attempt: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._store = store
        self._leases = leases
        self._task_id = task_id
        self._task = task
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
        """Store a progress report; raises TaskCancelled if the task was cancelled, and
        AttemptSuperseded if this attempt is over (another one runs, or a retry waits).

        Progress is best effort: while Redis is unreachable the report is dropped (and
        logged) rather than failing the task; the outcome itself is stored with retries.
        """
        if self._leases.is_lost(self._task_id, self._attempt):
            raise AttemptSuperseded(self.task_id, attempt=self._attempt)
        try:
            await self._store.transition(
                self._task_id,
                TaskState.PROGRESS,
                task=self._task,
                progress=Progress(percent=percent, message=message, meta=meta),
                attempt=self._attempt,
            )
        except StaleAttemptError:
            raise AttemptSuperseded(self.task_id, attempt=self._attempt) from None
        except InvalidTransitionError as refused:
            if refused.current == TaskState.CANCELLED:
                raise TaskCancelled(self.task_id) from None
            raise AttemptSuperseded(self.task_id, attempt=self._attempt) from None
        except BackendUnavailableError as error:
            log.warning("progress report dropped: redis unavailable", reason=error.reason)

    async def cancelled(self) -> bool:
        """Whether this attempt should stop: its task was cancelled, or the attempt is over."""
        if self._leases.is_lost(self._task_id, self._attempt):
            return True
        record = await self._store.get(self._task_id)
        return record.status is not TaskState.PROGRESS or record.attempts != self._attempt

    def progress_sync(
        self, percent: float, message: str = "", meta: dict[str, JsonValue] | None = None
    ) -> None:
        """From a sync task running in the worker's thread pool."""
        future = asyncio.run_coroutine_threadsafe(self.progress(percent, message, meta), self._loop)
        future.result()

    def cancelled_sync(self) -> bool:
        return asyncio.run_coroutine_threadsafe(self.cancelled(), self._loop).result()
