"""Submitting tasks and reading their state."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.api.deps import ServicesDep
from services.api.schemas import CatalogEntry, Problem, TaskCreate, TaskPublic
from services.core.errors import BackendUnavailableError, TaskNotFoundError, UnknownTaskError
from services.core.models import TaskMessage

router = APIRouter(tags=["tasks"])

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "Unknown task name or id."},
    503: {"model": Problem, "description": "Kafka or Redis is unavailable; retry later."},
}


@router.post(
    "/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskPublic,
    responses={**_ERRORS, 413: {"model": Problem, "description": "Payload too large."}},
)
async def submit_task(body: TaskCreate, services: ServicesDep, response: Response) -> TaskPublic:
    """Accept a task: store it as PENDING, publish it, answer once the broker has it."""
    try:
        spec = services.catalog.get(body.task)
    except UnknownTaskError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    size = len(json.dumps(body.payload, separators=(",", ":")).encode())
    if size > services.settings.max_payload_bytes:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"payload is {size} bytes; the limit is {services.settings.max_payload_bytes}",
        )
    try:
        spec.payload_model.model_validate(body.payload)
    except ValidationError as error:
        details = [
            {"loc": ["body", "payload", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]}
            for e in error.errors()
        ]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, details) from error

    task_id = uuid4()
    record = await services.store.create(task_id, spec.name, body.payload)
    message = TaskMessage(id=task_id, task=spec.name, payload=body.payload)
    try:
        await services.publisher.publish(services.settings.task_topic(spec.name), message)
    except BackendUnavailableError:
        # The message may not exist: never leave a PENDING record that no worker will see.
        await services.store.delete(task_id)
        raise
    response.headers["Location"] = f"/tasks/{task_id}"
    return TaskPublic.model_validate(record.model_dump())


@router.get("/tasks/{task_id}", response_model=TaskPublic, responses=_ERRORS)
async def get_task(task_id: UUID, services: ServicesDep) -> TaskPublic:
    """The task's current record."""
    try:
        record = await services.store.get(task_id)
    except TaskNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    return TaskPublic.model_validate(record.model_dump())


@router.get(
    "/tasks/{task_id}/events",
    responses={
        **_ERRORS,
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."},
    },
    response_class=EventSourceResponse,
)
async def task_events(task_id: UUID, services: ServicesDep) -> EventSourceResponse:
    """Stream the task's state changes until it reaches a terminal state (current state first)."""
    follower = services.store.follow(task_id)
    try:
        first = await anext(follower)
    except TaskNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error

    async def stream() -> AsyncIterator[ServerSentEvent]:
        if first is not None:
            yield ServerSentEvent(
                data=first.model_dump_json(), event="state", id=str(first.version)
            )
        async for record in follower:
            if record is not None:
                yield ServerSentEvent(
                    data=record.model_dump_json(), event="state", id=str(record.version)
                )

    return EventSourceResponse(stream(), ping=15)


@router.get("/catalog", response_model=list[CatalogEntry], tags=["catalog"])
async def list_catalog(services: ServicesDep) -> list[CatalogEntry]:
    """Every task this deployment runs, with its topic and payload schema."""
    return [
        CatalogEntry(
            name=spec.name,
            topic=services.settings.task_topic(spec.name),
            description=spec.description,
            payload_schema=spec.payload_model.model_json_schema(),
            timeout_seconds=spec.timeout_seconds,
        )
        for spec in services.catalog.specs()
    ]
