"""Request and response bodies, named by role."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from services.core.models import TaskRecord


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200, description="A name from GET /catalog.")
    payload: dict[str, JsonValue] = Field(
        default_factory=dict, description="Validated against the task's payload schema."
    )


class TaskPublic(TaskRecord):
    """A task's record as clients see it."""


class TaskBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskCreate] = Field(
        min_length=1, description="The tasks, at most `KT_API_MAX_BATCH_TASKS` of them."
    )


class TaskBatchPublic(BaseModel):
    """The batch's tasks, in the order they were sent."""

    items: list[TaskPublic]


class CatalogEntry(BaseModel):
    name: str
    topic: str
    description: str
    payload_schema: dict[str, JsonValue]
    timeout_seconds: float | None
    retry: dict[str, JsonValue]


class Problem(BaseModel):
    """Body of every error response."""

    detail: str | list[dict[str, JsonValue]]


class TaskPage(BaseModel):
    """One page of ``GET /tasks``, newest first."""

    items: list[TaskPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
