"""Liveness and readiness, open without credentials so Kubernetes probes can call them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.deps import ServicesDep
from services.core import contract

router = APIRouter(tags=["health"])


@router.get(contract.API_LIVENESS_PATH)
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(contract.API_READINESS_PATH)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Kafka and Redis are both reachable; 503 otherwise."""
    checks = {
        "redis": await services.store.ping(),
        "kafka": await services.publisher.ready(),
    }
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
