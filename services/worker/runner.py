"""Runs one task message: state transitions around the task function, outcome stored, and a
failed attempt retried (through the retry topic) or dead-lettered."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import structlog
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.core import metrics, topics
from services.core.catalog import Catalog, TaskSpec
from services.core.errors import (
    AlreadyRunningError,
    InvalidTransitionError,
    TaskCancelled,
    TaskNotFoundError,
    UnknownTaskError,
)
from services.core.logs import get_logger
from services.core.models import (
    DeadLetter,
    Progress,
    ScheduledRetry,
    TaskError,
    TaskMessage,
    TaskRecord,
    utcnow,
)
from services.core.publisher import TaskPublisher
from services.core.states import TaskState
from services.core.store import TaskStore
from services.worker.backoff import until_available
from services.worker.context import WorkerTaskContext

log = get_logger(__name__)
_ANY = TypeAdapter(Any)


class TaskRunner:
    def __init__(
        self,
        store: TaskStore,
        catalog: Catalog,
        publisher: TaskPublisher,
        *,
        namespace: str,
        threads: int,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._publisher = publisher
        self._namespace = namespace
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="task")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, raw: bytes, delivery: str) -> None:
        """Process one task message. Returns once its outcome is stored, so the message may be
        acknowledged; raises only if the worker is stopping before that."""
        try:
            message = TaskMessage.model_validate_json(raw)
        except ValidationError as error:
            log.error(
                "not a task message; skipped",
                error=str(error),
                raw=raw[:200].decode("utf-8", "replace"),
            )
            return
        with structlog.contextvars.bound_contextvars(task_id=str(message.id), task=message.task):
            await self._run(message, delivery)

    async def _run(self, message: TaskMessage, delivery: str) -> None:
        try:
            spec = self._catalog.get(message.task)
        except UnknownTaskError as error:
            await self._fail_unknown(message, error)
            return
        # No read first: the start write itself refuses a settled or unknown task, which saves
        # a Redis round trip on every task.
        try:
            record = await until_available(
                lambda: self._store.transition(
                    message.id,
                    TaskState.PROGRESS,
                    progress=Progress(percent=0, message="started"),
                    start_delivery=delivery,
                )
            )
        except AlreadyRunningError as running:
            log.info("duplicate delivery skipped: the task runs already", reason=str(running))
            return
        except TaskNotFoundError:
            log.warning("no record for this task (expired or never stored); skipped")
            return
        except InvalidTransitionError as refused:
            log.info("task already settled; duplicate delivery skipped", status=refused.current)
            return
        metrics.TASKS_STARTED.labels(spec.name).inc()
        log.info("task started", attempt=record.attempts)
        started = time.perf_counter()
        outcome = "complete"
        try:
            result = await self._call(spec, message, record)
        except TaskCancelled:
            outcome = "cancelled"
            log.info("task stopped: it was cancelled")
        except Exception as error:
            outcome = "failed"
            await self._after_failure(spec, message, record, error)
        else:
            await self._settle(message, TaskState.COMPLETE, result=result)
            metrics.TASKS_COMPLETED.labels(spec.name).inc()
            log.info("task complete")
        finally:
            metrics.TASK_DURATION.labels(spec.name, outcome).observe(time.perf_counter() - started)

    async def _fail_unknown(self, message: TaskMessage, error: UnknownTaskError) -> None:
        """A message for a task this worker's catalog lacks (a deployment out of step)."""
        try:
            record = await until_available(lambda: self._store.get(message.id))
        except TaskNotFoundError:
            return
        if not record.status.is_terminal:
            await self._fail(message, _error_of(error), attempts=record.attempts)

    async def _call(self, spec: TaskSpec, message: TaskMessage, record: TaskRecord) -> Any:
        loop = asyncio.get_running_loop()
        context = WorkerTaskContext(self._store, message.id, record.attempts, loop)
        payload = spec.payload_model.model_validate(message.payload)
        if spec.is_async:
            call: Awaitable[Any] = spec.function(payload, context)
        else:
            # A thread cannot be interrupted: on a time limit its attempt is failed at once,
            # but the thread runs on until the function returns.
            call = loop.run_in_executor(self._executor, spec.function, payload, context)
        try:
            outcome = await asyncio.wait_for(call, timeout=spec.timeout_seconds)
        except TimeoutError:
            raise TimeoutError(
                f"attempt ran over its {spec.timeout_seconds} s time limit"
            ) from None
        if isinstance(outcome, BaseModel):
            return outcome.model_dump(mode="json")
        return _ANY.dump_python(outcome, mode="json")

    async def _after_failure(
        self, spec: TaskSpec, message: TaskMessage, record: TaskRecord, error: Exception
    ) -> None:
        failure = _error_of(error)
        if not spec.retry.retries(error, attempt=record.attempts):
            log.warning("task failed", error_type=failure.type, error=failure.message)
            await self._fail(message, failure, attempts=record.attempts)
            return
        delay = spec.retry.delay_before(record.attempts + 1)
        due = utcnow() + timedelta(seconds=delay)
        # RETRY is stored before the retry message is sent: should the worker die in between,
        # the original message comes back and a RETRY task may start again.
        try:
            await until_available(
                lambda: self._store.transition(
                    message.id, TaskState.RETRY, error=failure, retry_at=due
                )
            )
        except (InvalidTransitionError, TaskNotFoundError) as refused:
            log.info("no retry: task already settled", reason=str(refused))
            return
        retry = ScheduledRetry(message=message, due_at=due, attempt=record.attempts)
        await until_available(
            lambda: self._publisher.publish(
                topics.retry_topic(self._namespace), retry, key=str(message.id)
            )
        )
        metrics.TASKS_RETRIED.labels(spec.name).inc()
        log.warning(
            "attempt failed; retry scheduled",
            attempt=record.attempts,
            in_seconds=round(delay, 3),
            error_type=failure.type,
        )

    async def _fail(self, message: TaskMessage, error: TaskError, *, attempts: int) -> None:
        # The dead letter is written before FAILURE is stored: a crash in between repeats the
        # attempt (and may dead-letter twice) rather than lose the dead letter.
        letter = DeadLetter(message=message, error=error, attempts=attempts)
        await until_available(
            lambda: self._publisher.publish(
                topics.dead_letter_topic(self._namespace), letter, key=str(message.id)
            )
        )
        await self._settle(message, TaskState.FAILURE, error=error)
        metrics.TASKS_FAILED.labels(message.task).inc()

    async def _settle(
        self,
        message: TaskMessage,
        state: TaskState,
        *,
        result: Any = None,
        error: TaskError | None = None,
    ) -> None:
        progress = Progress(percent=100, message="done") if state is TaskState.COMPLETE else None
        try:
            await until_available(
                lambda: self._store.transition(
                    message.id, state, result=result, error=error, progress=progress
                )
            )
        except (InvalidTransitionError, TaskNotFoundError) as refused:
            # Cancelled (or expired) while running: the stored state stands.
            log.info("outcome not stored; task already settled", reason=str(refused))


def _error_of(error: BaseException) -> TaskError:
    return TaskError(
        type=type(error).__name__,
        message=str(error) or type(error).__name__,
        traceback="".join(traceback.format_exception(error)),
    )
