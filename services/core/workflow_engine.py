"""Runs workflows forward: submits what is due, through the one ``Submitter``.

What is due is decided from the workflow's record alone (``WorkflowFields``), so
``advance`` can be called any number of times, by anyone: the runner after a member's
terminal write, the API after creating a workflow, the reaper for workflows left in the
outbox (a worker that died between a member's terminal write and the next submission). Each
step's task id is derived from the workflow and the step, so a step submitted twice is one
task; the outbox entry goes only once everything due was submitted.
"""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

from pydantic import JsonValue

from services.core.errors import (
    IdempotencyConflictError,
    InvalidOptionError,
    InvalidPayloadError,
    InvalidTransitionError,
    KafkaTasksError,
    PayloadTooLargeError,
    TaskNotFoundError,
    UnknownTaskError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
)
from services.core.keys import new_task_id
from services.core.logs import get_logger
from services.core.states import TaskState
from services.core.store import TaskStore
from services.core.submission import Submitter
from services.core.workflow_book import Idempotency, WorkflowBook, WorkflowFields
from services.core.workflows import (
    FailedMember,
    Signature,
    WorkflowKind,
    WorkflowLink,
    WorkflowRecord,
    WorkflowSpec,
    WorkflowState,
)

log = get_logger(__name__)

_REFUSED = (UnknownTaskError, InvalidPayloadError, PayloadTooLargeError, InvalidOptionError)
"""A step that can never be submitted: the workflow fails at it."""


class WorkflowEngine:
    def __init__(self, store: TaskStore, submitter: Submitter) -> None:
        self._store = store
        self._book: WorkflowBook = store.workflow_book()
        self._submitter = submitter

    @property
    def book(self) -> WorkflowBook:
        return self._book

    def check(self, spec: WorkflowSpec) -> None:
        """Refuse, before anything is stored, a workflow whose steps cannot run: unknown
        tasks (first: 404 before anything else), payloads their models refuse, a result
        field the receiving task lacks."""
        for signature in spec.steps:
            self._submitter.spec(signature.task)
        for step, signature in enumerate(spec.steps):
            receives = _receiving_field(spec, step)
            model = self._submitter.spec(signature.task).payload_model
            if receives is not None and receives not in model.model_fields:
                option = "results_as" if step == len(spec.tasks) else "previous_as"
                raise InvalidOptionError(
                    option,
                    f"task {signature.task!r} (step {step}) has no payload field {receives!r} "
                    f"to receive the result; its fields: {', '.join(model.model_fields)}"
                    + ("" if option == "results_as" else " (or set previous_as to null)"),
                )
            try:
                self._submitter.validate(signature.task, signature.payload)
            except InvalidPayloadError as error:
                # The field that will receive a result is not given yet.
                missing = [e for e in error.errors if e["loc"] != [receives]]
                if missing:
                    raise InvalidPayloadError(signature.task, errors=missing) from error

    async def start(
        self, spec: WorkflowSpec, *, idempotency_key: str | None = None
    ) -> tuple[WorkflowRecord, bool]:
        """Store the workflow and submit its first steps (a chain's first link, every member
        of a group or chord); returns (record, started). Should that submission fail, the
        workflow is cancelled and the error raised: nothing of it runs.

        With an ``idempotency_key`` already used for the same workflow, that workflow is
        returned with False (and whatever of its start is still due, submitted: its first
        request may have died half-way); used for anything else, IdempotencyConflictError.
        A start that failed frees its key, so the client's retry starts afresh."""
        self.check(spec)
        idempotency = Idempotency.of(idempotency_key, spec) if idempotency_key else None
        workflow_id = new_task_id(idempotency_key)
        earlier = await self._book.create(workflow_id, spec, idempotency=idempotency)
        if earlier is not None:
            assert idempotency is not None
            earlier_id, earlier_hash = earlier.split(" ")
            if earlier_hash != idempotency.request_hash:
                raise IdempotencyConflictError(idempotency.key, task_id=earlier_id, kind="workflow")
            await self.advance(UUID(earlier_id))
            return await self._book.read(UUID(earlier_id)), False
        try:
            await self.advance(workflow_id)
        except KafkaTasksError:
            await self.cancel(workflow_id)
            if idempotency is not None:
                await self._book.release(workflow_id, idempotency)
            raise
        log.info("workflow accepted", workflow_id=str(workflow_id), kind=spec.kind.value)
        return await self._book.read(workflow_id), True

    async def advance(self, workflow_id: UUID) -> int:
        """Submit whatever of the workflow is due and not yet submitted; returns how many
        steps it submitted. BackendUnavailableError leaves it in the outbox for later."""
        try:
            fields = await self._book.fields(workflow_id)
        except WorkflowNotFoundError:
            await self._book.settle(workflow_id, "")
            return 0
        submitted = 0
        if fields.status is WorkflowState.RUNNING:
            for step in _due_steps(fields):
                signature = fields.spec.steps[step]
                payload = _payload_of(fields, step, signature)
                try:
                    submission = await self._submitter.submit(
                        signature.task, payload, workflow=WorkflowLink(id=workflow_id, step=step)
                    )
                except _REFUSED as error:
                    log.warning(
                        "workflow step refused; the workflow fails",
                        workflow_id=str(workflow_id),
                        step=step,
                        error=str(error),
                    )
                    failed = FailedMember(
                        step=step, task_id=None, status=TaskState.FAILURE, error=str(error)
                    )
                    await self._end(workflow_id, WorkflowState.FAILURE, failed)
                    return submitted
                submitted += 1
                status = await self._book.attach(workflow_id, step, submission.record.id)
                if status is not WorkflowState.RUNNING:
                    await self._cancel_member(submission.record.id)  # it ended meanwhile
        await self._book.settle(workflow_id, fields.wake)
        return submitted

    async def cancel(self, workflow_id: UUID) -> WorkflowRecord:
        """Cancel a running workflow: nothing more is submitted, its pending members never
        start and its running ones stop at their next check. WorkflowFinishedError if it
        ended already; WorkflowNotFoundError."""
        members = await self._book.end(workflow_id, WorkflowState.CANCELLED)
        for task_id in members:
            await self._cancel_member(task_id)
        log.info("workflow cancelled", workflow_id=str(workflow_id), members=len(members))
        return await self._book.read(workflow_id)

    async def _end(self, workflow_id: UUID, status: WorkflowState, failed: FailedMember) -> None:
        try:
            members = await self._book.end(workflow_id, status, failed=failed)
        except (WorkflowFinishedError, WorkflowNotFoundError):
            return
        for task_id in members:
            await self._cancel_member(task_id)

    async def _cancel_member(self, task_id: UUID) -> None:
        # Finished already (or expired): nothing to stop.
        with contextlib.suppress(InvalidTransitionError, TaskNotFoundError):
            await self._store.transition(task_id, TaskState.CANCELLED)


def _receiving_field(spec: WorkflowSpec, step: int) -> str | None:
    """The payload field of ``step`` that receives earlier results, if any."""
    if spec.kind is WorkflowKind.CHAIN and step > 0:
        return spec.tasks[step].previous_as
    if spec.kind is WorkflowKind.CHORD and step == len(spec.tasks):
        return spec.results_as
    return None


def _due_steps(fields: WorkflowFields) -> list[int]:
    """Steps whose turn came and that are not submitted yet."""
    spec, total = fields.spec, fields.total
    if spec.kind is WorkflowKind.CHAIN:
        step = next((s for s in range(total) if s not in fields.finished), None)
        if step is None or step in fields.submitted:
            return []
        if step > 0 and fields.finished.get(step - 1) is not TaskState.COMPLETE:
            return []
        return [step]
    due = [step for step in range(total) if step not in fields.submitted]
    if (
        spec.kind is WorkflowKind.CHORD
        and fields.done == total
        and total not in fields.submitted
        and (not fields.failed or spec.call_on_failure)
    ):
        due.append(total)
    return due


def _payload_of(fields: WorkflowFields, step: int, signature: Signature) -> dict[str, JsonValue]:
    receives = _receiving_field(fields.spec, step)
    if receives is None:
        return dict(signature.payload)
    received: Any
    if fields.spec.kind is WorkflowKind.CHAIN:
        received = fields.results.get(step - 1)
    else:
        received = [fields.results.get(member) for member in range(fields.total)]
    return {**signature.payload, receives: received}
