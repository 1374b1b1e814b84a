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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import JsonValue, ValidationError

from services.core import metrics
from services.core.catalog import Catalog, TaskSpec
from services.core.errors import (
    BackendUnavailableError,
    InvalidPayloadError,
    PayloadTooLargeError,
    SubmissionUnknownError,
)
from services.core.keys import new_task_id
from services.core.logs import get_logger
from services.core.models import TaskMessage, TaskRecord
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.core.store import TaskStore

log = get_logger(__name__)


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

    async def submit(
        self,
        task: str,
        payload: dict[str, JsonValue],
        *,
        idempotency_key: str | None = None,
    ) -> Submission:
        """Accept a task: returns once it is stored and the broker acknowledged its message.
        The task's id is in its Idempotency-Key's shard (keys.py), so that claiming the key
        and creating the record are one atomic write, on a cluster too."""
        spec, stored = self.validate(task, payload)
        task_id = new_task_id(idempotency_key)
        try:
            record, created = await self._store.create(
                task_id, spec.name, stored, idempotency_key=idempotency_key
            )
        except BackendUnavailableError as error:
            if error.maybe_applied:
                await self._take_back(task_id, spec.name, idempotency_key, error)
            raise
        if not created:
            return Submission(record, created=False)
        message = TaskMessage(id=task_id, task=spec.name, payload=stored)
        try:
            position = await self._publisher.publish(
                self._settings.task_topic(spec.name), message, key=str(task_id)
            )
        except BackendUnavailableError as error:
            if await self._take_back(task_id, spec.name, idempotency_key, error):
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
        self,
        task_id: UUID,
        task: str,
        idempotency_key: str | None,
        cause: BackendUnavailableError,
    ) -> bool:
        """Withdraw a submission about to be refused; False if a worker started it already.
        Raises SubmissionUnknownError when Redis cannot take the withdrawal."""
        try:
            return await self._store.withdraw(task_id, task=task, idempotency_key=idempotency_key)
        except BackendUnavailableError as error:
            log.warning(
                "submission left in doubt: it could not be withdrawn",
                task_id=str(task_id),
                cause=cause.reason,
                reason=error.reason,
            )
            raise SubmissionUnknownError(str(task_id), reason=f"{cause}; then {error}") from error
