"""Builds the FastAPI application: routers, error handlers, middleware and shared clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from services.api.deps import Services
from services.api.limits import BodySizeLimit, reject_unknown_query
from services.api.routes import catalog as catalog_routes
from services.api.routes import dashboard, health, schedules, tasks
from services.api.routes import workflows as workflows_routes
from services.api.schemas import Problem
from services.api.security import (
    ApiKeys,
    PlainHttpKeyGuard,
    refuse_open_exposure,
    require_api_key,
)
from services.api.streams import StreamSlots
from services.api.timing import RequestTiming
from services.core import contract, kafka_security, policy
from services.core.catalog import Catalog
from services.core.errors import (
    BackendUnavailableError,
    ConfigurationError,
    IdempotencyConflictError,
    IdempotencyKeyInUseError,
    InvalidBatchError,
    InvalidOptionError,
    InvalidPayloadError,
    PayloadTooLargeError,
    SubmissionUnknownError,
    UnknownTaskError,
)
from services.core.kafka_topics import ensure_topics
from services.core.logs import get_logger
from services.core.publisher import TaskPublisher
from services.core.redis_client import connect, verify_credentials
from services.core.settings import Settings
from services.core.store import FOLLOW_BLOCK_SECONDS, TaskStore
from services.core.submission import Submitter
from services.core.workflow_engine import WorkflowEngine

log = get_logger(__name__)

# Room for the {"task": ..., "payload": ...} envelope around the largest allowed payload.
ENVELOPE_BYTES = 4096


def create_app(settings: Settings, catalog: Catalog) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings)
        # Event streams block on Redis for up to FOLLOW_BLOCK_SECONDS each: a pool of their
        # own, one connection per admitted stream, so they never starve ordinary requests.
        stream_redis = connect(
            settings,
            max_connections=settings.api_max_event_streams,
            wait_for_connection=False,
            read_timeout_seconds=FOLLOW_BLOCK_SECONDS + settings.redis_timeout_seconds,
        )
        try:
            await verify_credentials(redis)
            await kafka_security.verify_credentials(settings)
        except ConfigurationError as refused:
            log.error("refusing to start", reason=str(refused))
            raise
        store = TaskStore.from_settings(redis, settings, streams=stream_redis)
        publisher = TaskPublisher(settings)
        if settings.declare_topics:
            try:
                created = await ensure_topics(settings, catalog)
                log.info("topics declared", created=created)
            except Exception as exc:  # the API still starts; /readyz tells the truth
                log.warning("could not declare topics", error=str(exc))
        streams = StreamSlots(settings.api_max_event_streams)
        policy.schedules(catalog, settings)  # a wrong schedule stops the start, with why
        submitter = Submitter(store, publisher, catalog, settings)
        workflows = WorkflowEngine(store, submitter)
        app.state.services = Services(
            settings, store, publisher, catalog, streams, submitter, workflows
        )
        try:
            yield
        finally:
            await publisher.stop()
            await redis.aclose()
            await stream_redis.aclose()

    app = FastAPI(
        title="kafka-tasks",
        summary="Submit tasks to Kafka-backed workers and follow them to completion.",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.api_keys = ApiKeys(settings.all_api_keys())
    refuse_open_exposure(settings, app.state.api_keys)
    if not app.state.api_keys.enabled:
        log.warning(
            "no API keys configured: the API accepts every request (allowed on a loopback "
            "address only)",
            host=settings.api_host,
        )
    protected = [Depends(require_api_key)]
    unauthorized: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem, "description": "Missing or wrong API key."}
    }
    for router in (tasks.router, workflows_routes.router, catalog_routes.router, schedules.router):
        app.include_router(router, dependencies=protected, responses=unauthorized)
    app.include_router(health.router)
    app.include_router(dashboard.page)
    app.include_router(dashboard.data, responses=unauthorized)
    app.mount("/dashboard/static", StaticFiles(directory=dashboard.STATIC), name="dashboard")
    app.add_middleware(
        BodySizeLimit,
        limit=settings.max_payload_bytes + ENVELOPE_BYTES,
        by_path={"/tasks/batch": settings.api_max_batch_bytes},
    )

    if settings.api_https_only:
        app.add_middleware(PlainHttpKeyGuard)

    # Outermost: it times everything, the size guard's 413s included.
    app.add_middleware(RequestTiming)

    @app.get(contract.API_METRICS_PATH, include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def not_allowed(request: Request) -> JSONResponse:
        # Starlette's Allow names only the first route that matched the path; a path served
        # by several routes (GET and POST /tasks) must list all their methods. The OpenAPI
        # document is the public list of them. A literal path (/tasks/batch) is its own
        # resource, not /tasks/{task_id}'s.
        matching = {
            template: operations
            for template, operations in app.openapi()["paths"].items()
            if compile_path(template)[0].fullmatch(request.url.path)
        }
        literal = {t: ops for t, ops in matching.items() if "{" not in t}
        allowed = sorted(
            method.upper() for operations in (literal or matching).values() for method in operations
        )
        return JSONResponse(
            {"detail": f"{request.method} is not allowed here; use {', '.join(allowed)}"},
            status_code=405,
            headers={"Allow": ", ".join(allowed)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code != 405:
            return await http_exception_handler(request, error)
        return not_allowed(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        # GET /tasks/batch reaches GET /tasks/{task_id}, whose id "batch" is malformed; but
        # the client named an existing resource with a method it does not take.
        operations = app.openapi()["paths"].get(request.url.path)
        if operations is not None and request.method.lower() not in operations:
            return not_allowed(request)
        return await request_validation_exception_handler(request, error)

    @app.exception_handler(BackendUnavailableError)
    async def backend_unavailable(request: Request, error: BackendUnavailableError) -> JSONResponse:
        log.warning("backend unavailable", backend=error.backend, reason=error.reason)
        return JSONResponse(
            {"detail": f"{error.backend} is unavailable; nothing was stored, retry later"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(SubmissionUnknownError)
    async def submission_unknown(request: Request, error: SubmissionUnknownError) -> JSONResponse:
        headers = {"Retry-After": "1"}
        if len(error.task_ids) == 1:
            headers["Location"] = f"/tasks/{error.task_ids[0]}"
        return JSONResponse(
            {"detail": str(error), "task_ids": error.task_ids}, status_code=504, headers=headers
        )

    @app.exception_handler(InvalidBatchError)
    async def invalid_batch(request: Request, error: InvalidBatchError) -> JSONResponse:
        detail: str | list[dict[str, Any]] = (
            [{**e, "loc": ["body", "tasks", e["index"], *e["loc"]]} for e in error.errors]
            if error.errors
            else str(error)
        )
        # As for one task: an unknown task name is a 404, with every error listed.
        unknown = any(e.get("type") == "unknown_task" for e in error.errors)
        return JSONResponse({"detail": detail}, status_code=404 if unknown else 422)

    @app.exception_handler(UnknownTaskError)
    async def unknown_task(request: Request, error: UnknownTaskError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(PayloadTooLargeError)
    async def payload_too_large(request: Request, error: PayloadTooLargeError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=413)

    @app.exception_handler(InvalidOptionError)
    async def invalid_option(request: Request, error: InvalidOptionError) -> JSONResponse:
        detail = [{"loc": ["body", error.option], "msg": error.message, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(InvalidPayloadError)
    async def invalid_payload(request: Request, error: InvalidPayloadError) -> JSONResponse:
        details = [{**e, "loc": ["body", "payload", *e["loc"]]} for e in error.errors]
        return JSONResponse({"detail": details}, status_code=422)

    @app.exception_handler(IdempotencyConflictError)
    async def idempotency_conflict(
        request: Request, error: IdempotencyConflictError
    ) -> JSONResponse:
        in_use = isinstance(error, IdempotencyKeyInUseError)
        return JSONResponse(
            {"detail": str(error)},
            status_code=409,
            headers={"Retry-After": "1"} if in_use else None,
        )

    return app
