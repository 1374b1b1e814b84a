"""The task catalog, so clients and reviewers can see what runs here."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.deps import ServicesDep
from services.api.schemas import CatalogEntry

router = APIRouter(prefix="/catalog", tags=["catalog"])


@router.get("", response_model=list[CatalogEntry])
async def list_catalog(services: ServicesDep) -> list[CatalogEntry]:
    """Every task this deployment runs: topic, payload schema, time limit and retry policy."""
    return [
        CatalogEntry(
            name=spec.name,
            topic=services.settings.task_topic(spec.name),
            description=spec.description,
            payload_schema=spec.payload_model.model_json_schema(),
            timeout_seconds=spec.timeout_seconds,
            retry=spec.retry.model_dump(mode="json"),
        )
        for spec in services.catalog.specs()
    ]
