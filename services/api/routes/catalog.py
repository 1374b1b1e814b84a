"""The task catalog, so clients and reviewers can see what runs here."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.deps import ServicesDep
from services.api.schemas import CatalogEntry
from services.core import policy, topics

router = APIRouter(prefix="/catalog", tags=["catalog"])


@router.get("", response_model=list[CatalogEntry])
async def list_catalog(services: ServicesDep) -> list[CatalogEntry]:
    """Every task this deployment runs: topics, payload schema, time limit, retry policy,
    rate and concurrency limits, schedules."""
    schedules = policy.schedules(services.catalog, services.settings)
    return [
        CatalogEntry(
            name=spec.name,
            topic=services.settings.task_topic(spec.name),
            topics={
                priority: services.settings.task_topic(spec.name, priority)
                for priority in (topics.PRIORITIES if spec.prioritized else ("default",))
            },
            description=spec.description,
            payload_schema=spec.payload_model.model_json_schema(),
            timeout_seconds=spec.timeout_seconds,
            retry=spec.retry.model_dump(mode="json"),
            rate_limit=str(limit)
            if (limit := policy.rate_limit(spec, services.settings))
            else None,
            concurrency=spec.concurrency.model_dump(mode="json") if spec.concurrency else None,
            prioritized=spec.prioritized,
            schedules=[entry.key for entry in schedules if entry.task == spec.name],
        )
        for spec in services.catalog.specs()
    ]
