"""The one error hierarchy of kafka-tasks.

KafkaTasksError
├── UnknownTaskError          a task name the catalog does not hold
├── TaskNotFoundError         no record for that id (never existed, or expired)
├── InvalidTransitionError    a write that the state table refuses (e.g. a terminal task)
│   └── AlreadyRunningError   an attempt runs already from another copy of the message
├── BackendUnavailableError   Kafka or Redis cannot be reached right now
├── IdempotencyConflictError  an Idempotency-Key reused with a different request
└── TaskCancelled             raised inside task code when its task was cancelled
"""

from __future__ import annotations


class KafkaTasksError(Exception):
    """Root of every error this project raises on purpose."""


class UnknownTaskError(KafkaTasksError):
    def __init__(self, name: str, *, known: list[str]) -> None:
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(known)}")
        self.name = name
        self.known = known


class TaskNotFoundError(KafkaTasksError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id}")
        self.task_id = task_id


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


class BackendUnavailableError(KafkaTasksError):
    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} is unavailable: {reason}")
        self.backend = backend
        self.reason = reason


class IdempotencyConflictError(KafkaTasksError):
    def __init__(self, key: str, *, task_id: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for task {task_id} with a different "
            "request; use a new key for a new task"
        )
        self.key = key
        self.task_id = task_id


class TaskCancelled(KafkaTasksError):  # noqa: N818  (a signal, like asyncio.CancelledError)
    """Raised into task code by a progress report or check once its task was cancelled."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} was cancelled")
        self.task_id = task_id
