"""Submitting, reading, following and cancelling tasks."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from pydantic import AwareDatetime, BaseModel, BeforeValidator, TypeAdapter
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from services.api.deps import ServicesDep
from services.api.limits import require_json
from services.api.schemas import (
    Problem,
    TaskBatchCreate,
    TaskBatchPublic,
    TaskCreate,
    TaskPage,
    TaskPublic,
)
from services.core import metrics
from services.core.errors import (
    InvalidTransitionError,
    TaskNotFoundError,
)
from services.core.logs import get_logger
from services.core.models import TaskRecord
from services.core.states import TaskState
from services.core.submission import Timing

router = APIRouter(prefix="/tasks", tags=["tasks"])
log = get_logger(__name__)

Responses = dict[int | str, dict[str, Any]]

NOT_FOUND: Responses = {
    404: {"model": Problem, "description": "No task with this id (or it expired)."}
}
UNAVAILABLE: Responses = {503: {"model": Problem, "description": "Kafka or Redis is unavailable."}}


def _iso_8601_only(value: object) -> object:
    # pydantic would also take a number of seconds; the schema promises an ISO 8601 date-time.
    if isinstance(value, str) and not ISO_DATE.match(value):
        raise ValueError("use an ISO 8601 date-time with an offset, e.g. 2026-11-25T10:00:00Z")
    return value


ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T")
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeat a submission safely: the same key and body answer the first one again.",
    ),
]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskPublic,
    dependencies=[Depends(require_json)],
    responses={
        400: {"model": Problem, "description": "The body could not be read (not UTF-8)."},
        404: {"model": Problem, "description": "Unknown task name."},
        409: {
            "model": Problem,
            "description": "Idempotency-Key reused for another request, or sent again while "
            "its first request is still being processed (then with Retry-After).",
        },
        413: {"model": Problem, "description": "Payload too large."},
        415: {"model": Problem, "description": "Body is not application/json."},
        422: {
            "model": Problem,
            "description": "Invalid JSON, payload or option (countdown with eta, an expiry "
            "that is past or not after the due time, a priority the task has no topic for).",
        },
        **UNAVAILABLE,
        504: {
            "model": Problem,
            "description": "Kafka and Redis failed in a way that leaves the outcome unknown: "
            "the task (its id is in Location) may run. Follow it, or resubmit with the same "
            "Idempotency-Key.",
        },
    },
)
async def submit_task(
    body: TaskCreate, services: ServicesDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Accept a task: store it as PENDING, publish it, answer once the broker has it (a task
    with a countdown or eta is stored held back, and queued when due)."""
    services.submitter.spec(body.task)  # an unknown task is a 404 before any option's 422
    timing = Timing.of(countdown=body.countdown, eta=body.eta, expires=body.expires)
    submission = await services.submitter.submit(
        body.task,
        body.payload,
        idempotency_key=idempotency_key,
        priority=body.priority,
        timing=timing,
    )
    record = submission.record
    return _json(record, status_code=202, headers={"Location": f"/tasks/{record.id}"})


@router.post(
    "/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskBatchPublic,
    dependencies=[Depends(require_json)],
    responses={
        400: {"model": Problem, "description": "The body could not be read (not UTF-8)."},
        409: {
            "model": Problem,
            "description": "Idempotency-Key reused for another batch, or sent again while "
            "its first request is still being processed (then with Retry-After).",
        },
        404: {
            "model": Problem,
            "description": "A task name the catalog does not hold: every error of the batch, "
            "located by index; nothing was stored.",
        },
        413: {"model": Problem, "description": "Body over `KT_API_MAX_BATCH_BYTES`."},
        415: {"model": Problem, "description": "Body is not application/json."},
        422: {
            "model": Problem,
            "description": "Too many tasks, or invalid ones: every error, located by the "
            "task's index (`body.tasks.<index>...`); nothing was stored.",
        },
        **UNAVAILABLE,
        504: {
            "model": Problem,
            "description": "Kafka and Redis failed so that some tasks (`task_ids`) may run.",
        },
    },
)
async def submit_tasks(
    body: TaskBatchCreate, services: ServicesDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Accept many tasks at once, all or nothing: one Redis round trip, one producer batch,
    answered once the broker has every message."""
    submissions = await services.submitter.submit_many(
        [(item.task, item.payload) for item in body.tasks], idempotency_key=idempotency_key
    )
    items = _items([s.record for s in submissions], page=False)
    return Response(items, status_code=202, media_type="application/json")


@router.get(
    "",
    response_model=TaskPage,
    responses={422: {"model": Problem, "description": "A filter is malformed."}},
)
async def list_tasks(
    services: ServicesDep,
    state: Annotated[TaskState | None, Query(description="Only tasks in this state.")] = None,
    task: Annotated[str | None, Query(max_length=200, description="Only this task name.")] = None,
    since: Annotated[
        IsoDateTime | None,
        Query(description="Created (finished, for a terminal state) at or after this time."),
    ] = None,
    until: Annotated[
        IsoDateTime | None, Query(description="... and at or before this time.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
) -> Response:
    """Recent tasks, newest first, filtered by state, task name and time window."""
    if task is not None and task not in services.catalog.names():
        records: list[TaskRecord] = []  # a filter that matches nothing
        next_cursor = None
    else:
        records, next_cursor = await services.store.list_tasks(
            state=state,
            task=task,
            since=since,
            until=until,
            limit=limit,
            cursor=int(cursor) if cursor else None,
        )
    body = _items(records, next_cursor=next_cursor, page=True)
    return Response(body, media_type="application/json")


@router.get("/{task_id}", response_model=TaskPublic, responses=NOT_FOUND | UNAVAILABLE)
async def get_task(task_id: UUID, services: ServicesDep) -> Response:
    """The task's current record."""
    try:
        record = await services.store.get(task_id)
    except TaskNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    return _json(record)


@router.get(
    "/{task_id}/history", response_model=list[TaskPublic], responses=NOT_FOUND | UNAVAILABLE
)
async def task_history(task_id: UUID, services: ServicesDep) -> Response:
    """Every state the task went through, oldest first."""
    try:
        records = await services.store.history(task_id)
    except TaskNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    return Response(_RECORDS.dump_json(records), media_type="application/json")


@router.post(
    "/{task_id}/cancel",
    response_model=TaskPublic,
    responses={
        **NOT_FOUND,
        409: {"model": Problem, "description": "The task already finished."},
        **UNAVAILABLE,
    },
)
async def cancel_task(task_id: UUID, services: ServicesDep) -> Response:
    """Cancel a task: a queued one never starts; a running one stops at its next check."""
    try:
        record = await services.store.transition(task_id, TaskState.CANCELLED)
    except TaskNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    except InvalidTransitionError as error:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"task {task_id} is already {error.current}"
        ) from error
    metrics.TASKS_CANCELLED.labels(record.task).inc()
    log.info("task cancelled", task_id=str(task_id))
    return _json(record)


@router.get(
    "/{task_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."},
        **NOT_FOUND,
        503: {
            "model": Problem,
            "description": "Kafka or Redis is unavailable, or this API process serves as many "
            "event streams as it may; poll GET /tasks/<id> or retry after Retry-After.",
        },
    },
)
async def task_events(task_id: UUID, services: ServicesDep) -> EventSourceResponse:
    """Stream the task's state changes until it reaches a terminal state (current state first)."""
    lease = services.streams.take()
    if lease is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"this API process serves as many event streams as it may ({services.streams.limit}); "
            f"poll GET /tasks/{task_id} or retry later",
            headers={"Retry-After": "1"},
        )
    follower = services.store.follow(task_id)
    try:
        first = await anext(follower)
    except TaskNotFoundError as error:
        lease.release()
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    except BaseException:
        lease.release()
        raise

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            if first is not None:
                yield _event(first)
            async for record in follower:
                if record is not None:
                    yield _event(record)
        finally:
            await follower.aclose()
            lease.release()

    # The background task runs once the response is over, however it ended: it frees the
    # slot even when the client left before the stream's body started.
    return EventSourceResponse(stream(), ping=15, background=BackgroundTask(lease.release))


_RECORDS = TypeAdapter(list[TaskRecord])


def _items(records: list[TaskRecord], *, next_cursor: int | None = None, page: bool) -> bytes:
    """``{"items": [...]}``, with ``next_cursor`` for a page of a listing."""
    body = b'{"items":' + _RECORDS.dump_json(records)
    if page:
        cursor = None if next_cursor is None else str(next_cursor)
        body += b',"next_cursor":' + json.dumps(cursor).encode()
    return body + b"}"


def _json(body: BaseModel, **options: Any) -> Response:
    """``body`` serialised once. Returned as a model, FastAPI would validate it against the
    route's response model and serialise it again: on GET /tasks/<id>, which every polling
    client calls, that was a third of the API's Python time per request. The response
    models stay declared on the routes, for the OpenAPI schema."""
    return Response(body.model_dump_json(), media_type="application/json", **options)


def _event(record: TaskRecord) -> ServerSentEvent:
    return ServerSentEvent(data=record.model_dump_json(), event="state", id=str(record.version))
