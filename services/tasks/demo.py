"""Built-in demo tasks, each on its own topic like the proof of concept's task_1 / task_2."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from services.core.catalog import TaskContext
from services.tasks import catalog


class SleepPayload(BaseModel):
    seconds: float = Field(default=10.0, ge=0, le=3600, description="How long to wait.")
    steps: int = Field(default=10, ge=1, le=1000, description="How many progress reports.")


class SleepResult(BaseModel):
    slept_seconds: float


@catalog.task()
async def sleep(payload: SleepPayload, ctx: TaskContext) -> SleepResult:
    """Wait, reporting progress as it goes (the proof of concept's 10-15 s task)."""
    step = payload.seconds / payload.steps
    for done in range(payload.steps):
        await ctx.progress(100 * done / payload.steps, f"step {done + 1} of {payload.steps}")
        await asyncio.sleep(step)
    return SleepResult(slept_seconds=payload.seconds)


class NoopPayload(BaseModel):
    echo: str | None = Field(default=None, max_length=1024, description="Returned as the result.")


@catalog.task()
async def noop(payload: NoopPayload, ctx: TaskContext) -> str | None:
    """Return at once; the benchmarks' task."""
    return payload.echo


class FailPayload(BaseModel):
    message: str = Field(default="failing on purpose", max_length=1024)


class DemoTaskError(RuntimeError):
    """Raised by the ``fail`` task."""


@catalog.task()
def fail(payload: FailPayload, ctx: TaskContext) -> None:
    """Raise, to show and test failure handling (a sync task: it runs in the thread pool)."""
    ctx.progress_sync(50, "about to fail")
    raise DemoTaskError(payload.message)
