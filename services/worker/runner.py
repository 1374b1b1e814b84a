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

from services.core import metrics, policy, topics
from services.core.catalog import Catalog, TaskSpec
from services.core.errors import (
    AlreadyRunningError,
    AttemptSuperseded,
    BackendUnavailableError,
    InvalidTransitionError,
    TaskCancelled,
    TaskNotFoundError,
    UnknownTaskError,
)
from services.core.limiter import Admission, ConcurrencyKey, Limiter, concurrency_value
from services.core.logs import get_logger
from services.core.models import (
    DeadLetter,
    Hold,
    Progress,
    ScheduledRetry,
    TaskError,
    TaskMessage,
    TaskRecord,
    utcnow,
)
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.core.states import TaskState
from services.core.store import TaskStore
from services.core.workflow_engine import WorkflowEngine
from services.worker.backoff import until_available
from services.worker.context import WorkerTaskContext
from services.worker.leases import LeaseKeeper

log = get_logger(__name__)
_ANY = TypeAdapter(Any)

INLINE_RATE_WAIT_SECONDS = 0.5
"""A rate-limit slot this close is waited for in place (the message's slot held that long);
a later one holds the task back through the timer loop, freeing the slot and the partition.
The hold ends this much before the slot, and the returning copy waits the rest in place: the
timer loop's tick and the trip through Kafka would otherwise make starts bunch up."""


class TaskRunner:
    def __init__(
        self,
        store: TaskStore,
        catalog: Catalog,
        publisher: TaskPublisher,
        leases: LeaseKeeper,
        *,
        settings: Settings,
        workflows: WorkflowEngine,
    ) -> None:
        self._store = store
        self._workflows = workflows
        self._catalog = catalog
        self._publisher = publisher
        self._leases = leases
        self._settings = settings
        self._limiter: Limiter = store.limiter()
        self._executor = ThreadPoolExecutor(settings.worker_threads, thread_name_prefix="task")
        # A synchronous task starts (PROGRESS, lease, time limit) only once a thread is free
        # for it: of the worker's many slots, only ``worker_threads`` can run such code.
        self._threads = asyncio.Semaphore(settings.worker_threads)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, raw: bytes, delivery: str) -> None:
        """Process one task message. Returns once its outcome is stored (or the message is
        known to need nothing), so the message may be acknowledged; raises only if the worker
        is stopping before that."""
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
            try:
                await self._run(message, delivery)
            except Exception as bug:
                # Not a task's error (those are stored) nor an outage (waited out): a bug. It
                # is logged with its traceback and counted, and the task failed, so that its
                # partition moves on rather than waiting for a fix forever.
                metrics.WORKER_ERRORS.labels("runner").inc()
                log.exception("worker error while handling a task; the task is failed")
                await self._give_up(message, bug)

    async def _run(self, message: TaskMessage, delivery: str) -> None:
        try:
            spec = self._catalog.get(message.task)
        except UnknownTaskError as error:
            await self._fail_unknown(message, error)
            return
        if message.expires_at is not None and utcnow() >= message.expires_at:
            await self._expire(message)
            return
        if not await self._within_rate(spec, message):
            return
        admitted, slot = await self._concurrency_slot(spec, message)
        if not admitted:
            return
        if spec.is_async:
            await self._run_spec(spec, message, delivery, slot)
            return
        async with self._threads:
            await self._run_spec(spec, message, delivery, slot)

    async def _run_spec(
        self,
        spec: TaskSpec,
        message: TaskMessage,
        delivery: str,
        slot: ConcurrencyKey | None,
    ) -> None:
        try:
            record = await until_available(lambda: self._start(message, delivery))
        except AlreadyRunningError as running:
            log.info("duplicate delivery skipped: the task runs already", reason=str(running))
            return  # the running copy holds the concurrency slot (the same task id)
        except InvalidTransitionError as refused:
            log.info("task already settled; duplicate delivery skipped", status=refused.current)
            await self._free(slot)
            return
        if record is None:
            await self._free(slot)
            return
        attempt = record.attempts
        self._leases.hold(message.id, attempt, slot)
        try:
            await self._attempt(spec, message, attempt)
        finally:
            self._leases.release(message.id, attempt)
            await self._free(slot)

    async def _expire(self, message: TaskMessage) -> None:
        """Its expiry passed before any attempt started: EXPIRED, and it never runs."""
        try:
            record = await until_available(
                lambda: self._store.transition(message.id, TaskState.EXPIRED)
            )
        except (InvalidTransitionError, TaskNotFoundError) as refused:
            log.info("expired message skipped: the task is not waiting", reason=str(refused))
            return
        await self._advance_workflow(record)
        metrics.TASKS_EXPIRED.labels(message.task).inc()
        log.info("task expired before it started", expires_at=str(message.expires_at))

    async def _within_rate(self, spec: TaskSpec, message: TaskMessage) -> bool:
        """Take a slot of the task's rate limit; False if the task was held back for a later
        one (or its record is settled). A copy that reserved its slot before runs without."""
        limit = policy.rate_limit(spec, self._settings)
        if limit is None:
            return True
        if message.rate_slot is not None:  # back from a hold, a little before its slot
            wait = (message.rate_slot - utcnow()).total_seconds()
            if wait > 0:
                await asyncio.sleep(min(wait, INLINE_RATE_WAIT_SECONDS))
            return True
        slot = await until_available(lambda: self._limiter.reserve(spec.name, limit))
        wait = slot.wait_seconds
        if wait <= INLINE_RATE_WAIT_SECONDS:
            if wait > 0:
                await asyncio.sleep(wait)
            return True
        await self._hold(
            message, Hold.RATE_LIMIT, wait - INLINE_RATE_WAIT_SECONDS, rate_slot=slot.at_us
        )
        return False

    async def _concurrency_slot(
        self, spec: TaskSpec, message: TaskMessage
    ) -> tuple[bool, ConcurrencyKey | None]:
        """Whether the attempt may start, and the concurrency slot it then holds (None: the
        task has no limit). Not admitted: all slots were taken, and the task was held back
        until one frees."""
        limit = spec.concurrency
        if limit is None:
            return True, None
        key = ConcurrencyKey(spec.name, concurrency_value(limit, message.payload), message.id)
        admission = await until_available(lambda: self._limiter.acquire(key, limit))
        if admission is not Admission.FULL:
            return True, key
        # Woken when a slot frees; the lease is a fallback should that wake-up be lost.
        await self._hold(message, Hold.CONCURRENCY, self._store.lease_seconds)
        return False, None

    async def _free(self, slot: ConcurrencyKey | None) -> None:
        if slot is not None:
            await until_available(lambda: self._limiter.release(slot))

    async def _hold(
        self, message: TaskMessage, reason: Hold, seconds: float, *, rate_slot: int | None = None
    ) -> None:
        until = utcnow() + timedelta(seconds=seconds)
        try:
            await until_available(
                lambda: self._store.hold(
                    message.id, until=until, reason=reason, rate_slot=rate_slot
                )
            )
        except TaskNotFoundError:
            if await self._store.restore(message) is None:
                return  # withdrawn
            await until_available(
                lambda: self._store.hold(
                    message.id, until=until, reason=reason, rate_slot=rate_slot
                )
            )
        except InvalidTransitionError as refused:
            log.info("not held back: the task is not waiting", reason=str(refused))
            return
        metrics.TASKS_HELD.labels(message.task, reason.value).inc()
        log.info("task held back", reason=reason.value, due_at=until.isoformat())

    async def _start(self, message: TaskMessage, delivery: str) -> TaskRecord | None:
        """Start an attempt (one write: PROGRESS, the attempt counted, the lease taken). A
        message whose record Redis lost gets its record back from the message first."""
        try:
            return await self._start_write(message, delivery)
        except TaskNotFoundError:
            pass
        age = (utcnow() - message.submitted_at).total_seconds()
        if age > self._settings.result_ttl_seconds:
            # Its record may have expired after it finished: running it again is not ours
            # to decide.
            log.warning("no record for this task and it is older than the result TTL; skipped")
            return None
        restored = await self._store.restore(message)
        if restored is None:
            log.info("submission withdrawn by the API (it answered 503); message skipped")
            return None
        log.warning("record lost from Redis: rebuilt from the task's message")
        return await self._start_write(message, delivery)

    async def _start_write(self, message: TaskMessage, delivery: str) -> TaskRecord:
        return await self._store.transition(
            message.id,
            TaskState.PROGRESS,
            task=message.task,
            progress=Progress(percent=0, message="started"),
            start_delivery=delivery,
        )

    async def _attempt(self, spec: TaskSpec, message: TaskMessage, attempt: int) -> None:
        metrics.TASKS_STARTED.labels(spec.name).inc()
        log.info("task started", attempt=attempt)
        started = time.perf_counter()
        outcome = "complete"
        try:
            result = await self._call(spec, message, attempt)
        except AttemptSuperseded as over:
            outcome = "superseded"
            log.info("attempt stopped: it is over and another takes the task", reason=str(over))
        except TaskCancelled:
            outcome = "cancelled"
            log.info("task stopped: it was cancelled")
        except Exception as error:
            outcome = "failed"
            await self._after_failure(spec, message, attempt, error)
        else:
            if await self._settle(message, attempt, TaskState.COMPLETE, result=result):
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
            await self._fail(message, _error_of(error), attempt=None, attempts=record.attempts)

    async def _give_up(self, message: TaskMessage, bug: Exception) -> None:
        try:
            record = await until_available(lambda: self._store.get(message.id))
            if not record.status.is_terminal:
                await self._fail(message, _error_of(bug), attempt=None, attempts=record.attempts)
        except Exception:
            metrics.WORKER_ERRORS.labels("runner").inc()
            log.exception("could not fail the task either; its message is skipped")

    async def _call(self, spec: TaskSpec, message: TaskMessage, attempt: int) -> Any:
        loop = asyncio.get_running_loop()
        context = WorkerTaskContext(
            self._store, self._leases, message.id, message.task, attempt, loop
        )
        payload = spec.payload_model.model_validate(message.payload)
        if spec.is_async:
            call: Awaitable[Any] = spec.function(payload, context)
        else:
            # A thread cannot be interrupted: on a time limit its attempt is failed at once,
            # but the thread runs on until the function returns or its next progress report
            # (refused, since the attempt is over) raises AttemptSuperseded into it.
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
        self, spec: TaskSpec, message: TaskMessage, attempt: int, error: Exception
    ) -> None:
        failure = _error_of(error)
        if not spec.retry.retries(error, attempt=attempt):
            log.warning("task failed", error_type=failure.type, error=failure.message)
            await self._fail(message, failure, attempt=attempt, attempts=attempt)
            return
        delay = spec.retry.delay_before(attempt + 1)
        due = utcnow() + timedelta(seconds=delay)
        # RETRY is stored before the retry message is sent: should the worker die in between,
        # the reaper puts the task back on its topic once the retry is overdue.
        try:
            await until_available(
                lambda: self._store.transition(
                    message.id,
                    TaskState.RETRY,
                    task=message.task,
                    error=failure,
                    retry_at=due,
                    attempt=attempt,
                )
            )
        except (InvalidTransitionError, TaskNotFoundError) as refused:
            log.info("no retry: task settled or another attempt runs", reason=str(refused))
            return
        # A rate-limit slot is good for one attempt: the retry takes a new one.
        retry = ScheduledRetry(
            message=message.model_copy(update={"rate_slot": None}), due_at=due, attempt=attempt
        )
        await until_available(
            lambda: self._publisher.publish(
                topics.retry_topic(self._settings.namespace), retry, key=str(message.id)
            )
        )
        metrics.TASKS_RETRIED.labels(spec.name).inc()
        log.warning(
            "attempt failed; retry scheduled",
            attempt=attempt,
            in_seconds=round(delay, 3),
            error_type=failure.type,
        )

    async def _fail(
        self, message: TaskMessage, error: TaskError, *, attempt: int | None, attempts: int
    ) -> None:
        # FAILURE first, then the dead letter written from it: an attempt that is over (or a
        # task cancelled meanwhile) has its FAILURE refused and dead-letters nothing, and a
        # worker that dies in between leaves the letter to the reaper (FAILURE keeps a
        # deadline until its letter is written). A letter may be written twice; re-drive
        # submits each task once.
        if not await self._settle(message, attempt, TaskState.FAILURE, error=error):
            return
        metrics.TASKS_FAILED.labels(message.task).inc()
        letter = DeadLetter(message=message, error=error, attempts=attempts)
        await until_available(
            lambda: self._publisher.publish(
                topics.dead_letter_topic(self._settings.namespace), letter, key=str(message.id)
            )
        )
        await until_available(lambda: self._store.confirm_lettered(message.id))

    async def _settle(
        self,
        message: TaskMessage,
        attempt: int | None,
        state: TaskState,
        *,
        result: Any = None,
        error: TaskError | None = None,
    ) -> bool:
        """Store the outcome; False if the task settled meanwhile (cancelled) or another
        attempt took it over (this one's outcome is discarded)."""
        progress = Progress(percent=100, message="done") if state is TaskState.COMPLETE else None
        try:
            record = await until_available(
                lambda: self._store.transition(
                    message.id,
                    state,
                    task=message.task,
                    result=result,
                    error=error,
                    progress=progress,
                    attempt=attempt,
                    # From the message: the store need not read it first.
                    workflow=message.workflow.id if message.workflow else None,
                )
            )
        except (InvalidTransitionError, TaskNotFoundError) as refused:
            log.info("outcome not stored", reason=str(refused))
            return False
        await self._advance_workflow(record)
        return True

    async def _advance_workflow(self, record: TaskRecord) -> None:
        """A workflow member finished: submit what its workflow has due now (the next chain
        link, a chord's callback). Its terminal write put the workflow in the outbox, so
        should this fail (or the worker die first) the reaper does it."""
        if record.workflow is None:
            return
        try:
            await self._workflows.advance(record.workflow.id)
        except BackendUnavailableError as error:
            log.warning(
                "workflow not advanced; the reaper will",
                workflow_id=str(record.workflow.id),
                reason=error.reason,
            )


def _error_of(error: BaseException) -> TaskError:
    return TaskError(
        type=type(error).__name__,
        message=str(error) or type(error).__name__,
        traceback="".join(traceback.format_exception(error)),
    )
