"""The one error hierarchy of kafka-tasks.

KafkaTasksError
├── UnknownTaskError            a task name the catalog does not hold
├── InvalidPayloadError         a payload its task's model refuses (errors by location)
├── PayloadTooLargeError        a payload over ``max_payload_bytes``
├── InvalidOptionError          a submission option that cannot hold (eta, expires, priority)
├── InvalidBatchError           a batch with invalid tasks (errors by index) or too many
├── TaskNotFoundError           no record for that id (never existed, or expired)
├── WorkflowNotFoundError       no workflow with that id (never existed, or expired)
├── WorkflowFinishedError       a cancel of a workflow that ended already
├── InvalidTransitionError      a write that the state table refuses (e.g. a terminal task)
│   ├── AlreadyRunningError     an attempt runs already from another copy of the message
│   └── StaleAttemptError       a write of an attempt that is no longer the task's current one
├── ConfigurationError          settings a service refuses to start with (open API, bad credentials)
├── BackendUnavailableError     Kafka or Redis cannot be reached, or refuses writes, right now
│   └── AccessDeniedError       ... or refuses these credentials or this operation (ACLs)
├── SubmissionUnknownError      a submission whose fate Redis and Kafka left unknown
├── StateStoreError             Redis answered what no correct client causes (a bug: loud)
├── IdempotencyConflictError    an Idempotency-Key reused with a different request
│   └── IdempotencyKeyInUseError   ... or again while its first request is not settled
└── TaskCancelled               raised inside task code when its task was cancelled
    └── AttemptSuperseded       ... or when its attempt is over and another one runs
"""

from __future__ import annotations

from typing import Any


class KafkaTasksError(Exception):
    """Root of every error this project raises on purpose."""


class UnknownTaskError(KafkaTasksError):
    def __init__(self, name: str, *, known: list[str]) -> None:
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(known)}")
        self.name = name
        self.known = known


class InvalidPayloadError(KafkaTasksError):
    def __init__(self, task: str, *, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"the payload does not fit task {task!r}'s model")
        self.task = task
        self.errors = errors
        """pydantic's errors: ``loc`` (inside the payload), ``msg`` and ``type`` each."""


class PayloadTooLargeError(KafkaTasksError):
    def __init__(self, *, size: int, limit: int) -> None:
        super().__init__(f"payload is {size} bytes; the limit is {limit}")
        self.size = size
        self.limit = limit


class InvalidOptionError(KafkaTasksError):
    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


class InvalidBatchError(KafkaTasksError):
    def __init__(self, reason: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(reason)
        self.errors = errors or []
        """One per refused task: ``index``, and ``loc``, ``msg``, ``type`` (or just ``msg``)."""


class TaskNotFoundError(KafkaTasksError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id}")
        self.task_id = task_id


class WorkflowNotFoundError(KafkaTasksError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow {workflow_id} (never submitted, or expired)")
        self.workflow_id = workflow_id


class WorkflowFinishedError(KafkaTasksError):
    def __init__(self, workflow_id: str, *, status: str) -> None:
        super().__init__(f"workflow {workflow_id} is already {status}")
        self.workflow_id = workflow_id
        self.status = status


class InvalidTransitionError(KafkaTasksError):
    def __init__(self, task_id: str, *, current: str, requested: str) -> None:
        super().__init__(f"task {task_id} is {current}; it cannot move to {requested}")
        self.task_id = task_id
        self.current = current
        self.requested = requested


class AlreadyRunningError(InvalidTransitionError):
    def __init__(self, task_id: str, *, delivery: str) -> None:
        super().__init__(task_id, current="PROGRESS", requested="PROGRESS")
        self.args = (f"task {task_id} is already running from delivery {delivery}",)
        self.delivery = delivery


class StaleAttemptError(InvalidTransitionError):
    def __init__(self, task_id: str, *, attempt: int, current: str, requested: str) -> None:
        super().__init__(task_id, current=current, requested=requested)
        self.args = (
            f"attempt {attempt} of task {task_id} is over (the task is {current} under a later "
            "attempt); its write is refused",
        )
        self.attempt = attempt


class BackendUnavailableError(KafkaTasksError):
    def __init__(self, backend: str, reason: str, *, maybe_applied: bool = False) -> None:
        super().__init__(f"{backend} is unavailable: {reason}")
        self.backend = backend
        self.reason = reason
        self.maybe_applied = maybe_applied
        """The request reached the backend before the failure, so it may have taken effect."""


class ConfigurationError(KafkaTasksError):
    """A setting the service will not start with; the message says which and how to fix it."""


class AccessDeniedError(BackendUnavailableError):
    """Kafka or Redis refused who we are (authentication) or what we asked (authorization).

    A configuration problem, not an outage: it does not pass by itself. Callers treat it like
    an unavailable backend (the API answers 503 and keeps nothing, a worker waits), and the
    message names the user, the operation and the resource, so the fix is clear."""

    def __init__(self, backend: str, *, user: str | None, operation: str, reason: str) -> None:
        who = f"user {user!r}" if user else "this client"
        super().__init__(backend, f"{who} is not allowed to {operation}: {reason}")
        self.user = user
        self.operation = operation


class SubmissionUnknownError(KafkaTasksError):
    def __init__(self, task_ids: list[str], *, reason: str) -> None:
        named = task_ids[0] if len(task_ids) == 1 else f"{len(task_ids)} tasks"
        super().__init__(
            f"{named} may or may not run: {reason}. Follow GET /tasks/<id> (it answers 404 if "
            "nothing was kept) or resubmit with the same Idempotency-Key"
        )
        self.task_ids = task_ids
        self.reason = reason


class StateStoreError(KafkaTasksError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"the state store answered unexpectedly: {reason}")
        self.reason = reason


class IdempotencyConflictError(KafkaTasksError):
    def __init__(self, key: str, *, task_id: str, kind: str = "task") -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for {kind} {task_id} with a different "
            f"request; use a new key for a new {kind}"
        )
        self.key = key
        self.task_id = task_id


class IdempotencyKeyInUseError(IdempotencyConflictError):
    def __init__(self, key: str, *, task_id: str) -> None:
        super().__init__(key, task_id=task_id)
        self.args = (
            f"a request with Idempotency-Key {key!r} (task {task_id}) is still being "
            "processed; retry in a moment to get its outcome",
        )


class TaskCancelled(KafkaTasksError):  # noqa: N818  (a signal, like asyncio.CancelledError)
    """Raised into task code by a progress report or check once its task was cancelled."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} was cancelled")
        self.task_id = task_id


class AttemptSuperseded(TaskCancelled):
    """Raised into task code whose attempt is over: it over-ran its time limit (a sync task's
    thread cannot be stopped) or lost its lease, and the task is retried or runs elsewhere."""

    def __init__(self, task_id: str, *, attempt: int) -> None:
        KafkaTasksError.__init__(
            self, f"attempt {attempt} of task {task_id} is over; another attempt takes over"
        )
        self.task_id = task_id
        self.attempt = attempt
