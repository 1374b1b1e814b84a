"""The periodic scheduler (Celery beat), run inside every worker: nothing else to deploy.

One worker leads (a Redis lease, ``scheduler_lease_seconds``, renewed every
``scheduler_interval_seconds``); the others keep trying to take the lease, so when the leader
dies another takes over within one lease. The leader fires every tick that is due, in order,
each through the one submission path with the Idempotency-Key ``schedule:<name>:<tick>``,
then moves the schedule past it (``ScheduleBook.advance``: only its leader, only from that
tick). A tick is therefore fired once even when a leader dies between the two steps or two
workers lead for a moment. Ticks missed by more than ``schedule_misfire_grace_seconds`` (no
worker ran) are skipped and counted; ticks missed during a takeover are fired late.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from services.core import metrics
from services.core.errors import (
    IdempotencyConflictError,
    IdempotencyKeyInUseError,
    SubmissionUnknownError,
)
from services.core.logs import get_logger
from services.core.models import ScheduleTick, utcnow
from services.core.schedule_book import ScheduleBook, ScheduleProgress
from services.core.schedules import Schedule
from services.core.settings import Settings
from services.core.submission import Submitter, Timing

log = get_logger(__name__)

MAX_FIRES_PER_PASS = 100
"""Ticks of one schedule fired in one pass at most (catching up is spread over passes)."""


class PeriodicScheduler:
    def __init__(
        self,
        book: ScheduleBook,
        submitter: Submitter,
        schedules: list[Schedule],
        settings: Settings,
    ) -> None:
        self._book = book
        self._submitter = submitter
        self._schedules = schedules
        self._settings = settings
        self.token = uuid.uuid4().hex
        """This worker's identity as a candidate leader."""
        self.leading = False

    async def tick(self) -> None:
        if not self._schedules:
            return
        leads = await self._book.lead(
            self.token, lease_seconds=self._settings.scheduler_lease_seconds
        )
        if leads != self.leading:
            log.info(
                "periodic scheduler " + ("leads" if leads else "no longer leads"), token=self.token
            )
            self.leading = leads
        if not leads:
            return
        progress = await self._book.progress([schedule.key for schedule in self._schedules])
        now = utcnow()
        for schedule in self._schedules:
            await self._catch_up(schedule, progress[schedule.key], now)

    async def _catch_up(
        self, schedule: Schedule, progress: ScheduleProgress, now: datetime
    ) -> None:
        tick = progress.next_tick
        if tick is None:
            await self._book.start(schedule.key, schedule.next_after(now))
            return
        grace = self._settings.schedule_misfire_grace_seconds
        for _ in range(MAX_FIRES_PER_PASS):
            if tick > now:
                return
            if (now - tick).total_seconds() > grace:
                tick = await self._skip(schedule, tick, now)
                if tick is None:
                    return
                continue
            task_id = await self._fire(schedule, tick)
            if task_id is None:
                return  # its first request is still settling: again next pass
            following = schedule.next_after(tick)
            outcome = await self._book.advance(
                schedule.key, self.token, tick=tick, following=following, task_id=task_id
            )
            if outcome != "ok":
                log.info(
                    "schedule moved on by another leader", schedule=schedule.key, outcome=outcome
                )
                return
            metrics.SCHEDULE_TICKS.labels(schedule.key, "fired").inc()
            log.info(
                "schedule tick fired", schedule=schedule.key, tick=tick.isoformat(), task_id=task_id
            )
            tick = following

    async def _skip(self, schedule: Schedule, tick: datetime, now: datetime) -> datetime | None:
        """Move past every tick older than the misfire grace in one step."""
        grace = self._settings.schedule_misfire_grace_seconds
        first, skipped = tick, 0
        while (now - tick).total_seconds() > grace:
            tick = schedule.next_after(tick)
            skipped += 1
        outcome = await self._book.advance(
            schedule.key, self.token, tick=first, following=tick, task_id=None, skipped=skipped
        )
        if outcome != "ok":
            return None
        metrics.SCHEDULE_TICKS.labels(schedule.key, "skipped").inc(skipped)
        log.warning(
            "schedule ticks missed by more than the misfire grace were skipped",
            schedule=schedule.key,
            skipped=skipped,
            since=first.isoformat(),
        )
        return tick

    async def _fire(self, schedule: Schedule, tick: datetime) -> str | None:
        """Submit the tick's task; its id, or None to try again later."""
        assert schedule.task is not None  # filled in by the catalog or checked in settings
        try:
            submission = await self._submitter.submit(
                schedule.task,
                schedule.payload,
                idempotency_key=schedule.idempotency_key(tick),
                priority=schedule.priority,
                timing=Timing(expires_at=schedule.expires_at(tick)),
                schedule=ScheduleTick(name=schedule.key, tick=tick),
            )
        except (IdempotencyKeyInUseError, SubmissionUnknownError) as unsettled:
            log.info("schedule tick not settled yet", schedule=schedule.key, reason=str(unsettled))
            return None
        except IdempotencyConflictError as changed:
            # The tick was fired with another payload (the schedule's definition changed in
            # between): it was fired, by that request.
            log.warning("schedule tick fired earlier with another payload", reason=str(changed))
            return changed.task_id
        return str(submission.record.id)
