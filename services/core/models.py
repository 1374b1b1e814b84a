"""The task record kept in Redis and the message carried on Kafka."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from services.core.priorities import Priority
from services.core.states import TaskState
from services.core.workflows import WorkflowLink


def utcnow() -> datetime:
    return datetime.now(UTC)


class Progress(BaseModel):
    percent: float = Field(ge=0, le=100)
    message: str = ""
    meta: dict[str, JsonValue] | None = None


class TaskError(BaseModel):
    type: str
    """The exception's class name, e.g. ``ValueError``."""
    message: str
    traceback: str | None = None


class Hold(StrEnum):
    """Why a PENDING (or RETRY) task waits for ``due_at`` before it is queued."""

    ETA = "eta"
    """Submitted with ``countdown`` or ``eta``."""
    RATE_LIMIT = "rate_limit"
    """Its task's rate limit gave it a later slot."""
    CONCURRENCY = "concurrency"
    """As many tasks with its concurrency key run already; it is woken when one ends."""


class ScheduleTick(BaseModel):
    """The schedule tick that submitted a task."""

    name: str
    tick: datetime


class TaskRecord(BaseModel):
    """A task's current state, as ``GET /tasks/<id>`` returns it."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    task: str
    status: TaskState
    payload: dict[str, JsonValue]
    progress: Progress | None = None
    result: JsonValue = None
    error: TaskError | None = None
    attempts: int = 0
    """How many times a worker has started this task (retries and redeliveries included)."""
    retry_at: datetime | None = None
    """When the next attempt is due (RETRY only)."""
    priority: Priority = Priority.DEFAULT
    due_at: datetime | None = None
    """When a held-back task is queued (see ``held_by``); none for a task queued at once."""
    held_by: Hold | None = None
    """Why it waits for ``due_at``: a delay (eta), its rate limit or its concurrency limit."""
    expires_at: datetime | None = None
    """Not started by then, it ends EXPIRED."""
    schedule: ScheduleTick | None = None
    """The periodic schedule and tick that submitted it."""
    workflow: WorkflowLink | None = None
    """The workflow it is a member of, and its step there."""
    delivery: str | None = Field(default=None, exclude=True)
    """topic/partition/offset of the message whose attempt runs (internal: duplicate guard)."""
    version: int = 0
    """Raised by one on every state write; lets readers order what they see."""
    created_at: datetime
    updated_at: datetime


class TaskMessage(BaseModel):
    """What the API publishes to a task's topic: enough to run the task without Redis."""

    id: UUID
    task: str
    payload: dict[str, Any]
    submitted_at: datetime = Field(default_factory=utcnow)
    priority: Priority = Priority.DEFAULT
    expires_at: datetime | None = None
    """A worker that receives it later ends the task EXPIRED instead of starting it."""
    rate_slot: datetime | None = None
    """The rate-limit slot this copy reserved before it was held back: it runs without
    taking another token. Never carried over to a retry."""
    workflow: WorkflowLink | None = None
    """Its workflow and step: a record rebuilt from the message keeps its membership."""


class ScheduledRetry(BaseModel):
    """On the retry topic: a task message to put back on its topic once ``due_at`` passes."""

    message: TaskMessage
    due_at: datetime
    attempt: int
    """The attempt that failed."""


class DeadLetter(BaseModel):
    """On the dead-letter topic: a task that failed for good, with why."""

    message: TaskMessage
    error: TaskError
    attempts: int
    failed_at: datetime = Field(default_factory=utcnow)
