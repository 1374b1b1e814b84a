"""Request and response bodies, named by role."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from services.core.models import TaskRecord
from services.core.priorities import Priority
from services.core.schedules import ScheduleStatus
from services.core.workflows import (
    MAX_MEMBERS,
    Signature,
    WorkflowEvent,
    WorkflowKind,
    WorkflowRecord,
    WorkflowSpec,
)


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200, description="A name from GET /catalog.")
    payload: dict[str, JsonValue] = Field(
        default_factory=dict, description="Validated against the task's payload schema."
    )
    countdown: Annotated[float, Field(ge=0, le=10 * 365 * 86400)] | None = Field(
        default=None, description="Queue the task this many seconds from now (Celery's countdown)."
    )
    eta: AwareDatetime | None = Field(
        default=None,
        description="Queue the task at this time (ISO 8601 with an offset); a past one runs now.",
    )
    expires: AwareDatetime | Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="A time (ISO 8601), or seconds from now, after which the task is not "
        "started: it ends EXPIRED.",
    )
    priority: Priority = Field(
        default=Priority.DEFAULT,
        description="high, default or low; tasks declared prioritized only (see GET /catalog).",
    )


class TaskPublic(TaskRecord):
    """A task's record as clients see it."""


class ChainCreate(BaseModel):
    """Links run one after the other, each getting the previous result."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[WorkflowKind.CHAIN]
    tasks: list[Signature] = Field(min_length=1, max_length=MAX_MEMBERS)


class GroupCreate(BaseModel):
    """Members run in parallel; the results come in member order."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[WorkflowKind.GROUP]
    tasks: list[Signature] = Field(min_length=1, max_length=MAX_MEMBERS)


class ChordCreate(BaseModel):
    """A group, then a callback that gets every result."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[WorkflowKind.CHORD]
    tasks: list[Signature] = Field(min_length=1, max_length=MAX_MEMBERS)
    callback: Signature
    results_as: str = Field(
        default="results",
        max_length=200,
        description="The callback's payload field that receives the list of results.",
    )
    call_on_failure: bool = Field(
        default=False,
        description="Call the callback even when members did not complete (their results "
        "null). Celery's default, false, skips it and the chord ends FAILURE.",
    )


WorkflowCreate = Annotated[ChainCreate | GroupCreate | ChordCreate, Field(discriminator="kind")]
"""A chain, group or chord to run (see README, Workflows)."""


def workflow_spec(body: ChainCreate | GroupCreate | ChordCreate) -> WorkflowSpec:
    return WorkflowSpec.model_validate(body.model_dump())


class WorkflowPublic(WorkflowRecord):
    """A workflow as clients see it: status, n of m done, members, results."""


class WorkflowEventPublic(WorkflowEvent):
    """One change of a workflow on its event stream."""


class TaskBatchItem(BaseModel):
    """One task of a batch: its name and payload. A batch takes no per-task options
    (countdown, eta, expires, priority): submit such tasks one by one."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200, description="A name from GET /catalog.")
    payload: dict[str, JsonValue] = Field(
        default_factory=dict, description="Validated against the task's payload schema."
    )


class TaskBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskBatchItem] = Field(
        min_length=1, description="The tasks, at most `KT_API_MAX_BATCH_TASKS` of them."
    )


class TaskBatchPublic(BaseModel):
    """The batch's tasks, in the order they were sent."""

    items: list[TaskPublic]


class CatalogEntry(BaseModel):
    name: str
    topic: str
    topics: dict[str, str]
    """Per priority, its topic (only ``default`` unless the task is prioritized)."""
    description: str
    payload_schema: dict[str, JsonValue]
    timeout_seconds: float | None
    retry: dict[str, JsonValue]
    rate_limit: str | None
    """Starts per second, minute or hour across all workers ('10/s'), settings included."""
    concurrency: dict[str, JsonValue] | None
    """``key`` (a payload field) and ``limit`` (running at once per value of it)."""
    prioritized: bool
    schedules: list[str]
    """Names of its periodic schedules (see GET /schedules)."""


class SchedulePublic(ScheduleStatus):
    """A periodic schedule and where it stands."""


class SchedulePage(BaseModel):
    leader: str | None
    """The token of the worker whose scheduler fires ticks (None: no worker leads now)."""
    items: list[SchedulePublic]


class Problem(BaseModel):
    """Body of every error response."""

    detail: str | list[dict[str, JsonValue]]


class TaskPage(BaseModel):
    """One page of ``GET /tasks``, newest first."""

    items: list[TaskPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
