"""Periodic schedules: what is declared, and where each stands (next and last run)."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.deps import ServicesDep
from services.api.schemas import SchedulePage, SchedulePublic
from services.core import policy
from services.core.models import utcnow

router = APIRouter(prefix="/schedules", tags=["schedules"])


@router.get("", response_model=SchedulePage)
async def list_schedules(services: ServicesDep) -> SchedulePage:
    """Every periodic schedule (catalog and settings) with its next and last run."""
    schedules = policy.schedules(services.catalog, services.settings)
    book = services.store.schedule_book()
    progress = await book.progress([entry.key for entry in schedules])
    now = utcnow()
    return SchedulePage(
        leader=await book.leader(),
        items=[
            SchedulePublic(
                name=entry.key,
                task=entry.task or "",
                rule=entry.rule,
                cron=entry.cron,
                every_seconds=entry.every_seconds,
                timezone=entry.timezone,
                payload=entry.payload,
                priority=entry.priority,
                expires_seconds=entry.expires_seconds,
                next_run_at=progress[entry.key].next_tick or entry.next_after(now),
                last_run_at=progress[entry.key].last_tick,
                last_task_id=progress[entry.key].last_task,
                skipped=progress[entry.key].skipped,
            )
            for entry in schedules
        ],
    )
