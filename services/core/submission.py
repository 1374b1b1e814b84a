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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import JsonValue, ValidationError

from services.core import metrics
from services.core.catalog import Catalog, TaskSpec
from services.core.errors import (
    BackendUnavailableError,
    InvalidBatchError,
    InvalidOptionError,
    InvalidPayloadError,
    PayloadTooLargeError,
    SubmissionUnknownError,
    UnknownTaskError,
)
from services.core.keys import new_task_id
from services.core.logs import get_logger
from services.core.models import ScheduleTick, TaskMessage, TaskRecord, utcnow
from services.core.priorities import Priority
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.core.store import NewTask, TaskStore
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

    def validate(self, task: str, payload: dict[str, JsonValue]) -> tuple[TaskSpec, dict[str, Any]]:
        """The task's spec and the payload as its model outputs it (what is stored, published
        and handed to the task: defaults filled in), if ``payload`` fits the model
        (UnknownTaskError, PayloadTooLargeError, InvalidPayloadError otherwise).

        A field the model does not declare is refused, unless the model says otherwise
        (``model_config = ConfigDict(extra="allow" | "ignore")``): a misspelt field would
        otherwise vanish and the task run with its default.
        """
        spec = self._catalog.get(task)
        size = len(json.dumps(payload, separators=(",", ":")).encode())
        if size > self._settings.max_payload_bytes:
            raise PayloadTooLargeError(size=size, limit=self._settings.max_payload_bytes)
        model = spec.payload_model
        try:
            validated = model.model_validate(
                payload, extra=None if "extra" in model.model_config else "forbid"
            )
        except ValidationError as error:
            raise InvalidPayloadError(
                spec.name,
                errors=[
                    {"loc": list(map(str, e["loc"])), "msg": e["msg"], "type": e["type"]}
                    for e in error.errors()
                ],
            ) from error
        return spec, validated.model_dump(mode="json", by_alias=True)

    def validate_batch(
        self, items: Sequence[tuple[str, dict[str, JsonValue]]]
    ) -> list[tuple[TaskSpec, dict[str, Any]]]:
        """``validate`` for each of a batch's tasks, if every one fits (all or nothing):
        InvalidBatchError with the errors of each refused task by its index otherwise."""
        limit = self._settings.api_max_batch_tasks
        if not items or len(items) > limit:
            raise InvalidBatchError(f"a batch holds 1 to {limit} tasks; this one has {len(items)}")
        specs, errors = [], []
        for index, (task, payload) in enumerate(items):
            try:
                specs.append(self.validate(task, payload))
            except InvalidPayloadError as error:
                errors += [
                    {"index": index, **e, "loc": ["payload", *e["loc"]]} for e in error.errors
                ]
            except UnknownTaskError as error:
                errors.append(
                    {"index": index, "loc": ["task"], "msg": str(error), "type": "unknown_task"}
                )
            except PayloadTooLargeError as error:
                errors.append(
                    {"index": index, "loc": ["payload"], "msg": str(error), "type": "too_large"}
                )
        if errors:
            raise InvalidBatchError(
                f"{len(errors)} error(s) in the batch; nothing was stored", errors=errors
            )
        return specs

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
        later, should none do it). A workflow step's id is derived from its workflow and
        step (see the module's note)."""
        spec, stored = self.validate(task, payload)
        if priority is not Priority.DEFAULT and not spec.prioritized:
            raise InvalidOptionError(
                "priority",
                f"task {spec.name!r} takes only the default priority (it has one topic); "
                "declare it with @catalog.task(prioritized=True) for high and low",
            )
        timing = timing or Timing()
        # The id is in its Idempotency-Key's shard (keys.py), so that claiming the key and
        # creating the record are one atomic write, on a cluster too; a workflow step's is in
        # its workflow's shard.
        task_id = (
            new_task_id(idempotency_key)
            if workflow is None
            else member_id(workflow.id, workflow.step)
        )
        new = NewTask(
            task_id,
            spec.name,
            stored,
            idempotency_key,
            priority=priority,
            due_at=timing.due_at,
            expires_at=timing.expires_at,
            schedule=schedule,
            workflow=workflow,
        )
        [submission] = await self._accept([new])
        return submission

    async def submit_many(
        self,
        items: Sequence[tuple[str, dict[str, JsonValue]]],
        *,
        idempotency_key: str | None = None,
    ) -> list[Submission]:
        """Accept a batch, all or nothing: validated as a whole, stored in one Redis round
        trip, published as one producer batch; returns once the broker has every message.
        With an Idempotency-Key, task i of the batch takes ``<key>#<i>``: the same batch sent
        again returns the same tasks."""
        keys = [
            f"{idempotency_key}#{index}" if idempotency_key else None for index in range(len(items))
        ]
        return await self._accept(
            [
                NewTask(new_task_id(key), spec.name, stored, key)
                for key, (spec, stored) in zip(keys, self.validate_batch(items), strict=True)
            ]
        )

    async def _accept(self, tasks: list[NewTask]) -> list[Submission]:
        """Store, publish and confirm validated tasks; every one is kept, or none (503), or
        the outcome is unknown for some (SubmissionUnknownError naming them)."""
        steps = any(task.workflow is not None for task in tasks)
        try:
            stored = await self._store.create_many(tasks)
        except BackendUnavailableError as error:
            if error.maybe_applied and not steps:
                await self._take_back(tasks, error)
            raise
        created = [task for task, (_, made) in zip(tasks, stored, strict=True) if made]
        for task in created:
            if task.due_at is not None:
                metrics.TASKS_SUBMITTED.labels(task.task).inc()
                log.info(
                    "task accepted, held until due",
                    task_id=str(task.id),
                    due_at=task.due_at.isoformat(),
                )
        new = [task for task in created if task.due_at is None]
        published = await self._publisher.publish_many(
            [
                (
                    self._settings.task_topic(task.task, task.priority),
                    TaskMessage(
                        id=task.id,
                        task=task.task,
                        payload=task.payload,
                        priority=task.priority,
                        expires_at=task.expires_at,
                        workflow=task.workflow,
                    ),
                    str(task.id),
                )
                for task in new
            ]
        )
        failures = [result for result in published if isinstance(result, BackendUnavailableError)]
        if failures and steps:
            # A workflow step is never taken back: stored, it is the reaper's to publish.
            log.warning(
                "workflow step stored, its publication refused; the reaper publishes it",
                task_ids=[str(task.id) for task in new],
                reason=failures[0].reason,
            )
            return [Submission(record, made) for record, made in stored]
        if failures:
            # All or nothing: every new task is taken back, those Kafka has included (a worker
            # skips their messages). One that a worker started already runs.
            running = await self._take_back(new, failures[0])
            if running and len(running) < len(new):
                raise SubmissionUnknownError(
                    [str(task_id) for task_id in running],
                    reason=f"{failures[0]}; the rest of the batch was taken back",
                )
            if not running:
                raise failures[0]
        positions = {
            task.id: result
            for task, result in zip(new, published, strict=True)
            if isinstance(result, str)
        }
        try:
            await self._store.confirm_published_many(positions)
        except BackendUnavailableError as error:
            log.warning(
                "tasks accepted, their publication not confirmed; the reaper may publish them "
                "again (copies that run once)",
                task_ids=[str(task_id) for task_id in positions],
                reason=error.reason,
            )
        for task in new:
            metrics.TASKS_SUBMITTED.labels(task.task).inc()
            log.info("task accepted", task_id=str(task.id), task=task.task)
        return [Submission(record, created) for record, created in stored]

    async def _take_back(self, tasks: list[NewTask], cause: BackendUnavailableError) -> list[UUID]:
        """Withdraw submissions about to be refused; returns those a worker started already
        (published after all: they run). Raises SubmissionUnknownError when Redis cannot
        take the withdrawals."""
        running = []
        for task in tasks:
            try:
                if not await self._store.withdraw(
                    task.id, task=task.task, idempotency_key=task.idempotency_key
                ):
                    running.append(task.id)
            except BackendUnavailableError as error:
                log.warning(
                    "submission left in doubt: it could not be withdrawn",
                    task_ids=[str(t.id) for t in tasks],
                    cause=cause.reason,
                    reason=error.reason,
                )
                raise SubmissionUnknownError(
                    [str(t.id) for t in tasks], reason=f"{cause}; then {error}"
                ) from error
        return running
