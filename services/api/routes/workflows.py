"""Submitting, reading, following and cancelling workflows (chains, groups, chords)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Response, status
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from services.api.deps import ServicesDep
from services.api.limits import require_json
from services.api.routes.tasks import UNAVAILABLE, IdempotencyKey, Responses
from services.api.schemas import Problem, WorkflowCreate, WorkflowPublic, workflow_spec
from services.core.errors import WorkflowFinishedError, WorkflowNotFoundError
from services.core.workflows import WorkflowEvent

router = APIRouter(prefix="/workflows", tags=["workflows"])

NOT_FOUND: Responses = {
    404: {"model": Problem, "description": "No workflow with this id (or it expired)."}
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WorkflowPublic,
    dependencies=[Depends(require_json)],
    responses={
        400: {"model": Problem, "description": "The body could not be read (not UTF-8)."},
        404: {"model": Problem, "description": "A step names an unknown task."},
        409: {"model": Problem, "description": "Idempotency-Key reused for another request."},
        413: {"model": Problem, "description": "A payload is too large."},
        415: {"model": Problem, "description": "Body is not application/json."},
        422: {
            "model": Problem,
            "description": "Invalid workflow: no members, a chord without callback, a payload "
            "its task refuses, a result field (previous_as, results_as) the task lacks.",
        },
        **UNAVAILABLE,
    },
)
async def submit_workflow(
    body: WorkflowCreate,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> WorkflowPublic:
    """Accept a chain, group or chord: its first steps are submitted before the answer (a
    chain's first link, every member of a group or chord); the rest as members finish. The
    same Idempotency-Key with the same body answers the first workflow again."""
    record, _ = await services.workflows.start(workflow_spec(body), idempotency_key=idempotency_key)
    response.headers["Location"] = f"/workflows/{record.id}"
    return WorkflowPublic.model_validate(record.model_dump())


@router.get("/{workflow_id}", response_model=WorkflowPublic, responses=NOT_FOUND | UNAVAILABLE)
async def get_workflow(workflow_id: UUID, services: ServicesDep) -> WorkflowPublic:
    """The workflow's status, progress (n of m done), members and results."""
    try:
        record = await services.workflows.book.read(workflow_id)
    except WorkflowNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    return WorkflowPublic.model_validate(record.model_dump())


@router.post(
    "/{workflow_id}/cancel",
    response_model=WorkflowPublic,
    responses={
        **NOT_FOUND,
        409: {"model": Problem, "description": "The workflow already ended."},
        **UNAVAILABLE,
    },
)
async def cancel_workflow(workflow_id: UUID, services: ServicesDep) -> WorkflowPublic:
    """Cancel a workflow: nothing more is submitted, pending members never start, running
    ones stop at their next check."""
    try:
        record = await services.workflows.cancel(workflow_id)
    except WorkflowNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    except WorkflowFinishedError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error
    return WorkflowPublic.model_validate(record.model_dump())


@router.get(
    "/{workflow_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."},
        **NOT_FOUND,
        503: {
            "model": Problem,
            "description": "Redis is unavailable, or this API process serves as many event "
            "streams as it may; poll GET /workflows/<id> or retry after Retry-After.",
        },
    },
)
async def workflow_events(workflow_id: UUID, services: ServicesDep) -> EventSourceResponse:
    """Stream the workflow's changes from its start (each member submitted and finished,
    with n of m done) until it ends."""
    lease = services.streams.take()
    if lease is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"this API process serves as many event streams as it may ({services.streams.limit}); "
            f"poll GET /workflows/{workflow_id} or retry later",
            headers={"Retry-After": "1"},
        )
    follower = services.workflows.book.follow(workflow_id)
    try:
        first = await anext(follower)
    except WorkflowNotFoundError as error:
        lease.release()
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    except BaseException:
        lease.release()
        raise

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            if first is not None:
                yield _event(first)
            if first is None or not first.status.is_terminal:
                async for event in follower:
                    if event is not None:
                        yield _event(event)
        finally:
            await follower.aclose()
            lease.release()

    return EventSourceResponse(stream(), ping=15, background=BackgroundTask(lease.release))


def _event(event: WorkflowEvent) -> ServerSentEvent:
    kind = "member" if event.step is not None else "workflow"
    return ServerSentEvent(data=event.model_dump_json(), event=kind, id=str(event.version))
