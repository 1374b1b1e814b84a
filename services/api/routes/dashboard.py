"""The live dashboard: a static page (no data, no secrets in it) and the protected summary it
polls. The page asks for an API key when the API requires one and sends it like any client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel

from services.api.deps import ServicesDep
from services.api.security import require_api_key
from services.core.autoscaling import read_scaling
from services.core.logs import get_logger

STATIC = Path(__file__).resolve().parent.parent / "static"
RATE_WINDOW_SECONDS = 300
LAG_CACHE_SECONDS = 5.0

page = APIRouter(include_in_schema=False)
data = APIRouter(prefix="/dashboard", tags=["dashboard"], dependencies=[Depends(require_api_key)])
log = get_logger(__name__)


class TopicScaling(BaseModel):
    topic: str
    partitions: int
    lag: int
    replicas: int
    """What this topic's trigger alone asks for."""


class Scaling(BaseModel):
    topics: list[TopicScaling]
    replicas: int
    """What the worker ScaledObject would settle on (all triggers, min/max applied)."""
    note: str


class Summary(BaseModel):
    namespace: str
    counts: dict[str, dict[str, int]]
    """Tasks per task name and state."""
    finished_per_second: dict[str, list[int]]
    """Per terminal state, one count per second over the last five minutes, oldest first."""
    scaling: Scaling


@page.get("/dashboard")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html")


@data.get("/summary", response_model=Summary)
async def summary(services: ServicesDep) -> Summary:
    """Counts per state and task, finish rates, and consumer lag with the replicas KEDA wants."""
    names = services.catalog.names()
    return Summary(
        namespace=services.settings.namespace,
        counts=await services.store.counts(names),
        finished_per_second=await services.store.finished_per_second(RATE_WINDOW_SECONDS),
        scaling=await _scaling(services),
    )


_cache: dict[str, Any] = {"at": 0.0, "scaling": None}


async def _scaling(services: ServicesDep) -> Scaling:
    """Reading Kafka for every poll of every open dashboard would be wasteful: cached briefly."""
    if _cache["scaling"] is None or time.monotonic() - _cache["at"] > LAG_CACHE_SECONDS:
        _cache["at"] = time.monotonic()
        try:
            _, decision = await read_scaling(services.settings, services.catalog)
        except Exception as error:  # a dashboard must not fail because Kafka hiccupped
            log.warning("could not read consumer lag", error=str(error))
            return Scaling(topics=[], replicas=0, note=f"lag unavailable: {error}")
        _cache["scaling"] = Scaling(
            topics=[
                TopicScaling(
                    topic=reading.topic,
                    partitions=reading.partitions,
                    lag=reading.lag,
                    replicas=reading.replicas,
                )
                for reading in decision.triggers
            ],
            replicas=decision.replicas,
            note=(
                f"consumer group {services.settings.consumer_group}: KEDA would run "
                f"{decision.replicas} worker(s): {decision.reason}"
            ),
        )
    scaling: Scaling = _cache["scaling"]
    return scaling
