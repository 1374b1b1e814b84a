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
from services.core.lag import PartitionLag, group_lag
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


class Scaling(BaseModel):
    topics: list[TopicScaling]
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


_lag_cache: dict[str, Any] = {"at": 0.0, "rows": []}


async def _scaling(services: ServicesDep) -> Scaling:
    settings = services.settings
    topics = [settings.task_topic(name) for name in services.catalog.names()]
    if time.monotonic() - _lag_cache["at"] > LAG_CACHE_SECONDS:
        try:
            _lag_cache["rows"] = await group_lag(
                settings.kafka_bootstrap_servers, settings.consumer_group, topics
            )
        except Exception as error:  # a dashboard must not fail because Kafka hiccupped
            log.warning("could not read consumer lag", error=str(error))
        _lag_cache["at"] = time.monotonic()
    rows: list[PartitionLag] = _lag_cache["rows"]
    per_topic = []
    for topic in topics:
        partitions = [row for row in rows if row.topic == topic]
        lag = sum(row.lag for row in partitions)
        per_topic.append(TopicScaling(topic=topic, partitions=len(partitions), lag=lag, replicas=0))
    return Scaling(topics=per_topic, note=f"consumer group {settings.consumer_group}")
