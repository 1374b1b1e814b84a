"""Submitting a task: the one path every caller takes (the API, re-drive, the reaper's
re-publication excepted, which only re-sends a message).

validate -> store PENDING -> publish (acks=all) -> confirm. What each failure leaves:

- Redis refuses or cannot be reached before the record exists: nothing; BackendUnavailable.
- Kafka does not acknowledge: the record is withdrawn (deleted, and marked so that a copy of
  the message that lands late is skipped); BackendUnavailable. If Redis cannot take the
  withdrawal either, nobody can tell whether the task will run: SubmissionUnknownError, which
  names the task id (the record, if it exists, is published again by the reaper, so it runs).
- The confirmation is lost after Kafka's acknowledgement: the task is accepted all the same;
  the reaper publishes it again if no worker started it by the publication deadline (a copy
  that the duplicate rule skips).

A workflow's step (``workflow``) is never taken back: its id is derived from the workflow and
the step, so submitting it again finds it; once its record is stored it is accepted, and a
publication Kafka refused is left to the reaper (its publication deadline, like an outbox).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from pydantic import JsonValue, ValidationError

from services.core import metrics
from services.core.catalog import Catalog, TaskSpec
from services.core.errors import (
    BackendUnavailableError,
    InvalidOptionError,
    InvalidPayloadError,
    PayloadTooLargeError,
    SubmissionUnknownError,
)
from services.core.logs import get_logger
from services.core.models import ScheduleTick, TaskMessage, TaskRecord, utcnow
from services.core.priorities import Priority
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.core.store import TaskStore
from services.core.workflows import WorkflowLink, member_id

log = get_logger(__name__)


@dataclass(frozen=True)
class Timing:
    """When a task may run: queued at once or at ``due_at``; not started after
    ``expires_at``. Built from Celery's options by ``Timing.of``."""

    due_at: datetime | None = None
    expires_at: datetime | None = None

    @classmethod
    def of(
        cls,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: datetime | float | None = None,
        now: datetime | None = None,
    ) -> Timing:
        """``countdown`` seconds or an ``eta`` (not both); ``expires`` a time or seconds from
        now. An eta in the past runs at once (as in Celery); an expiry that is past, or not
        after the due time, is refused: nothing could ever run."""
        now = now or utcnow()
        if countdown is not None and eta is not None:
            raise InvalidOptionError("countdown", "give countdown or eta, not both")
        if countdown is not None and countdown < 0:
            raise InvalidOptionError("countdown", "must be 0 or more seconds")
        due = eta if eta is not None else None
        if countdown is not None and countdown > 0:
            due = now + timedelta(seconds=countdown)
        if due is not None and due <= now:
            due = None
        if isinstance(expires, int | float):
            if expires <= 0:
                raise InvalidOptionError(
                    "expires", "must be a time, or a number of seconds above 0"
                )
            expires = now + timedelta(seconds=expires)
        if expires is not None:
            if expires <= now:
                raise InvalidOptionError("expires", f"{expires.isoformat()} is already past")
            if due is not None and expires <= due:
                raise InvalidOptionError(
                    "expires",
                    f"{expires.isoformat()} is not after the task is due ({due.isoformat()}): "
                    "it could never start",
                )
        return cls(due_at=due, expires_at=expires)


@dataclass(frozen=True)
class Submission:
    record: TaskRecord
    created: bool
    """False: an earlier submission with the same Idempotency-Key, returned as it is."""


class Submitter:
    def __init__(
        self, store: TaskStore, publisher: TaskPublisher, catalog: Catalog, settings: Settings
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._catalog = catalog
        self._settings = settings

    def spec(self, task: str) -> TaskSpec:
        """The task's spec (UnknownTaskError if the catalog has none)."""
        return self._catalog.get(task)

    def validate(self, task: str, payload: dict[str, JsonValue]) -> TaskSpec:
        """The task's spec, if ``payload`` fits it (UnknownTaskError, PayloadTooLargeError,
        InvalidPayloadError otherwise)."""
        spec = self._catalog.get(task)
        size = len(json.dumps(payload, separators=(",", ":")).encode())
        if size > self._settings.max_payload_bytes:
            raise PayloadTooLargeError(size=size, limit=self._settings.max_payload_bytes)
        try:
            spec.payload_model.model_validate(payload)
        except ValidationError as error:
            raise InvalidPayloadError(
                spec.name,
                errors=[
                    {"loc": list(map(str, e["loc"])), "msg": e["msg"], "type": e["type"]}
                    for e in error.errors()
                ],
            ) from error
        return spec

    async def submit(
        self,
        task: str,
        payload: dict[str, JsonValue],
        *,
        idempotency_key: str | None = None,
        priority: Priority = Priority.DEFAULT,
        timing: Timing | None = None,
        schedule: ScheduleTick | None = None,
        workflow: WorkflowLink | None = None,
    ) -> Submission:
        """Accept a task: returns once it is stored and the broker acknowledged its message.

        A task with a due time (``timing``) is stored held back and not published: the
        workers' timer loop queues it when it is due (the reaper, one publication deadline
        later, should none do it)."""
        spec = self.validate(task, payload)
        if priority is not Priority.DEFAULT and not spec.prioritized:
            raise InvalidOptionError(
                "priority",
                f"task {spec.name!r} takes only the default priority (it has one topic); "
                "declare it with @catalog.task(prioritized=True) for high and low",
            )
        timing = timing or Timing()
        task_id = uuid4() if workflow is None else member_id(workflow.id, workflow.step)
        try:
            record, created = await self._store.create(
                task_id,
                spec.name,
                payload,
                idempotency_key=idempotency_key,
                priority=priority,
                due_at=timing.due_at,
                expires_at=timing.expires_at,
                schedule=schedule,
                workflow=workflow,
            )
        except BackendUnavailableError as error:
            if error.maybe_applied and workflow is None:
                await self._take_back(task_id, idempotency_key, error)
            raise
        if not created:
            return Submission(record, created=False)
        if timing.due_at is not None:
            metrics.TASKS_SUBMITTED.labels(spec.name).inc()
            log.info(
                "task accepted, held until due",
                task_id=str(task_id),
                due_at=timing.due_at.isoformat(),
            )
            return Submission(record, created=True)
        message = TaskMessage(
            id=task_id,
            task=spec.name,
            payload=payload,
            priority=priority,
            expires_at=timing.expires_at,
            workflow=workflow,
        )
        try:
            position = await self._publisher.publish(
                self._settings.task_topic(spec.name, priority), message, key=str(task_id)
            )
        except BackendUnavailableError as error:
            if workflow is not None:
                log.warning(
                    "workflow step stored, its publication refused; the reaper publishes it",
                    task_id=str(task_id),
                    reason=error.reason,
                )
                return Submission(record, created=True)
            if await self._take_back(task_id, idempotency_key, error):
                raise
            position = None  # a worker started it: the message was published after all
        if position is not None:
            try:
                await self._store.confirm_published(task_id, position=position)
            except BackendUnavailableError as error:
                log.warning(
                    "task accepted, its publication not confirmed; the reaper may publish it "
                    "again (a copy that runs once)",
                    task_id=str(task_id),
                    reason=error.reason,
                )
        metrics.TASKS_SUBMITTED.labels(spec.name).inc()
        log.info("task accepted", task_id=str(task_id), task=spec.name)
        return Submission(record, created=True)

    async def _take_back(
        self, task_id: UUID, idempotency_key: str | None, cause: BackendUnavailableError
    ) -> bool:
        """Withdraw a submission about to be refused; False if a worker started it already.
        Raises SubmissionUnknownError when Redis cannot take the withdrawal."""
        try:
            return await self._store.withdraw(task_id, idempotency_key=idempotency_key)
        except BackendUnavailableError as error:
            log.warning(
                "submission left in doubt: it could not be withdrawn",
                task_id=str(task_id),
                cause=cause.reason,
                reason=error.reason,
            )
            raise SubmissionUnknownError(str(task_id), reason=f"{cause}; then {error}") from error
