"""Builds the FastAPI application: routers, error handlers and the shared clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from services.api.deps import Services
from services.api.publisher import TaskPublisher
from services.api.routes import health, tasks
from services.core.catalog import Catalog
from services.core.errors import BackendUnavailableError
from services.core.kafka_topics import ensure_topics
from services.core.logs import get_logger
from services.core.settings import Settings
from services.core.store import TaskStore

log = get_logger(__name__)


def create_app(settings: Settings, catalog: Catalog) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
        store = TaskStore(
            redis, namespace=settings.namespace, result_ttl_seconds=settings.result_ttl_seconds
        )
        publisher = TaskPublisher(settings)
        if settings.declare_topics:
            try:
                created = await ensure_topics(settings, catalog)
                log.info("topics declared", created=created)
            except Exception as exc:  # the API still starts; /readyz tells the truth
                log.warning("could not declare topics", error=str(exc))
        app.state.services = Services(settings, store, publisher, catalog)
        try:
            yield
        finally:
            await publisher.stop()
            await redis.aclose()

    app = FastAPI(
        title="kafka-tasks",
        summary="Submit tasks to Kafka-backed workers and follow them to completion.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(tasks.router)
    app.include_router(health.router)

    @app.exception_handler(BackendUnavailableError)
    async def backend_unavailable(request: Request, error: BackendUnavailableError) -> JSONResponse:
        log.warning("backend unavailable", backend=error.backend, reason=error.reason)
        return JSONResponse(
            {"detail": f"{error.backend} is unavailable; nothing was stored, retry later"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    return app
