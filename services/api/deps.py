"""What route handlers receive, as ``Annotated`` dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from services.api.streams import StreamSlots
from services.core.catalog import Catalog
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.core.store import TaskStore
from services.core.submission import Submitter
from services.core.workflow_engine import WorkflowEngine


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: TaskStore
    publisher: TaskPublisher
    catalog: Catalog
    streams: StreamSlots
    submitter: Submitter
    workflows: WorkflowEngine


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
    # hop on every request for an attribute lookup.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
