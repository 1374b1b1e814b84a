"""Runs one task message: state transitions around the task function, outcome stored."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.core.catalog import Catalog, TaskSpec
from services.core.errors import (
    BackendUnavailableError,
    InvalidTransitionError,
    TaskNotFoundError,
    UnknownTaskError,
)
from services.core.logs import get_logger
from services.core.models import Progress, TaskError, TaskMessage, TaskRecord
from services.core.states import TaskState
from services.core.store import TaskStore
from services.worker.context import WorkerTaskContext

log = get_logger(__name__)
T = TypeVar("T")
_ANY = TypeAdapter(Any)

STORE_RETRY_MAX_SECONDS = 5.0


class TaskRunner:
    def __init__(self, store: TaskStore, catalog: Catalog, *, threads: int) -> None:
        self._store = store
        self._catalog = catalog
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="task")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, raw: bytes) -> None:
        """Process one message. Returns once its outcome is stored (or it needs no run)."""
        try:
            message = TaskMessage.model_validate_json(raw)
        except ValidationError as error:
            log.error(
                "message is not a task; skipped",
                error=str(error),
                raw=raw[:200].decode(errors="replace"),
            )
            return
        with structlog.contextvars.bound_contextvars(task_id=str(message.id), task=message.task):
            await self._run(message)

    async def _run(self, message: TaskMessage) -> None:
        try:
            record = await self._persist(lambda: self._store.get(message.id))
        except TaskNotFoundError:
            log.warning("no record for this task (expired or never stored); skipped")
            return
        if record.status.is_terminal:
            log.info("task already finished; duplicate delivery skipped", status=record.status)
            return
        try:
            spec = self._catalog.get(message.task)
        except UnknownTaskError as error:
            await self._finish(message, TaskState.FAILURE, error=_error_of(error))
            return
        try:
            record = await self._persist(
                lambda: self._store.transition(
                    message.id,
                    TaskState.PROGRESS,
                    progress=Progress(percent=0, message="started"),
                    start_attempt=True,
                )
            )
        except (InvalidTransitionError, TaskNotFoundError) as error:
            log.info("task cannot start; skipped", reason=str(error))
            return
        log.info("task started", attempt=record.attempts)
        try:
            result = await self._call(spec, message, record)
        except Exception as error:
            log.warning("task failed", error_type=type(error).__name__, error=str(error))
            await self._finish(message, TaskState.FAILURE, error=_error_of(error))
        else:
            await self._finish(message, TaskState.COMPLETE, result=result)
            log.info("task complete")

    async def _call(self, spec: TaskSpec, message: TaskMessage, record: TaskRecord) -> Any:
        loop = asyncio.get_running_loop()
        context = WorkerTaskContext(self._store, message.id, record.attempts, loop)
        payload = spec.payload_model.model_validate(message.payload)
        if spec.is_async:
            outcome = await asyncio.wait_for(
                spec.function(payload, context), timeout=spec.timeout_seconds
            )
        else:
            outcome = await asyncio.wait_for(
                loop.run_in_executor(self._executor, spec.function, payload, context),
                timeout=spec.timeout_seconds,
            )
        if isinstance(outcome, BaseModel):
            return outcome.model_dump(mode="json")
        return _ANY.dump_python(outcome, mode="json")

    async def _finish(
        self,
        message: TaskMessage,
        state: TaskState,
        *,
        result: Any = None,
        error: TaskError | None = None,
    ) -> None:
        progress = Progress(percent=100, message="done") if state is TaskState.COMPLETE else None
        try:
            await self._persist(
                lambda: self._store.transition(
                    message.id, state, result=result, error=error, progress=progress
                )
            )
        except (InvalidTransitionError, TaskNotFoundError) as refused:
            # Cancelled (or expired) while running: the stored state stands.
            log.info("outcome not stored; task already settled", reason=str(refused))

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T:
        """Retry a Redis operation until Redis answers: the message is not acknowledged before
        its outcome is stored, so waiting here is what at-least-once means."""
        delay = 0.1
        while True:
            try:
                return await write()
            except BackendUnavailableError as error:
                log.warning("redis unavailable; retrying", reason=error.reason, in_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_SECONDS)


def _error_of(error: BaseException) -> TaskError:
    return TaskError(
        type=type(error).__name__,
        message=str(error) or type(error).__name__,
        traceback="".join(traceback.format_exception(error)),
    )
