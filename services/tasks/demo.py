"""Built-in demo tasks, each on its own topic like the proof of concept's task_1 / task_2."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel, Field

from services.core.catalog import RetryPolicy, TaskContext
from services.core.limits import ConcurrencyLimit
from services.tasks import catalog


class SleepPayload(BaseModel):
    seconds: float = Field(default=10.0, ge=0, le=3600, description="How long to wait.")
    steps: int = Field(
        default=10, ge=1, le=1000, description="Steps to wait in; progress after each but the last."
    )


class SleepResult(BaseModel):
    slept_seconds: float


@catalog.task(prioritized=True)
async def sleep(payload: SleepPayload, ctx: TaskContext) -> SleepResult:
    """Wait, reporting progress as it goes (the proof of concept's 10-15 s task): after each
    step but the last, whose report is the result (the start is reported by the worker)."""
    step = payload.seconds / payload.steps
    for done in range(1, payload.steps + 1):
        await asyncio.sleep(step)
        if done < payload.steps:
            await ctx.progress(100 * done / payload.steps, f"step {done} of {payload.steps}")
    return SleepResult(slept_seconds=payload.seconds)


class NoopPayload(BaseModel):
    echo: str | None = Field(default=None, max_length=1024, description="Returned as the result.")


@catalog.task(prioritized=True)
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


class FlakyPayload(BaseModel):
    fail_times: int = Field(default=1, ge=0, le=10, description="Attempts that fail first.")
    hang_seconds: float = Field(
        default=0, ge=0, le=60, description="Instead of raising, over-run the 2 s time limit."
    )


class FlakyError(RuntimeError):
    """Raised by ``flaky`` on its first ``fail_times`` attempts."""


@catalog.task(
    timeout_seconds=2.0,
    retry=RetryPolicy(max_attempts=3, backoff_seconds=0.5, retry_on=("FlakyError", "TimeoutError")),
)
async def flaky(payload: FlakyPayload, ctx: TaskContext) -> dict[str, int]:
    """Fail (or over-run its time limit) on the first attempts, then succeed: shows retries."""
    if ctx.attempt <= payload.fail_times:
        if payload.hang_seconds:
            await asyncio.sleep(payload.hang_seconds)
        raise FlakyError(f"attempt {ctx.attempt} fails on purpose")
    return {"succeeded_on_attempt": ctx.attempt}


class OverrunPayload(BaseModel):
    overrun_attempts: int = Field(
        default=1, ge=0, le=5, description="Attempts that over-run the 1 s time limit."
    )
    seconds: float = Field(
        default=3.0, ge=0, le=60, description="How long an over-running attempt goes on."
    )


@catalog.task(
    timeout_seconds=1.0,
    retry=RetryPolicy(max_attempts=3, backoff_seconds=0.5, retry_on=("TimeoutError",)),
)
def overrun(payload: OverrunPayload, ctx: TaskContext) -> dict[str, int]:
    """Over-run the time limit on the first attempts while reporting progress, then finish in
    time: shows what happens to a sync task's thread, which Python cannot stop."""
    if ctx.attempt <= payload.overrun_attempts:
        steps = max(1, int(payload.seconds * 10))
        for step in range(steps):
            time.sleep(payload.seconds / steps)
            ctx.progress_sync(100 * step / steps, "over-running")
    return {"finished_on_attempt": ctx.attempt}


class SyncCustomerPayload(BaseModel):
    customer: str = Field(max_length=200, description="Its concurrency key: one sync at a time.")
    seconds: float = Field(default=1.0, ge=0, le=3600, description="How long the sync takes.")


@catalog.task(concurrency=ConcurrencyLimit(key="customer", limit=1))
async def sync_customer(payload: SyncCustomerPayload, ctx: TaskContext) -> dict[str, str]:
    """Sync one customer's account: never two at once for the same customer (a concurrency
    key), any number for different ones."""
    await ctx.progress(0, f"syncing {payload.customer}")
    await asyncio.sleep(payload.seconds)
    return {"synced": payload.customer}


class AddPayload(BaseModel):
    x: float = Field(default=0, description="Added to the previous result.")
    previous: float | None = Field(
        default=None, description="In a chain: the previous link's result (none: 0)."
    )
    seconds: float = Field(default=0, ge=0, le=60, description="How long it takes first.")


@catalog.task()
async def add(payload: AddPayload, ctx: TaskContext) -> float:
    """Add ``x`` to the previous result: a chain's link (Celery's ``add.s(2) | add.s(3)``)."""
    if payload.seconds:
        await asyncio.sleep(payload.seconds)
    return (payload.previous or 0) + payload.x


class TallyPayload(BaseModel):
    results: list[float | None] = Field(
        default_factory=list, max_length=1000, description="A chord's member results."
    )


@catalog.task()
async def tally(payload: TallyPayload, ctx: TaskContext) -> dict[str, float | int]:
    """Sum a chord's results (a failed member's null counts as missing): a chord callback."""
    present = [value for value in payload.results if value is not None]
    missing = len(payload.results) - len(present)
    return {"sum": sum(present), "count": len(present), "missing": missing}
