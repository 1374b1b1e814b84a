"""Periodic schedules: a cron expression (croniter) or a fixed interval, in a timezone.

Ticks are pure functions of the definition, never of when a scheduler happened to look: an
interval's ticks are the multiples of it since the Unix epoch, a cron's the times croniter
gives in the schedule's timezone. So whichever worker leads computes the same tick, and the
tick's time makes the submission's Idempotency-Key (``schedule:<name>:<tick>``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from services.core.priorities import Priority

SCHEDULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class Schedule(BaseModel):
    """When to submit a task, and with what. Exactly one of ``cron`` and ``every_seconds``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, pattern=SCHEDULE_NAME)
    """Unique; defaults to the task's name (its first schedule) or ``<task>-<n>``."""
    task: str | None = None
    """Set by the catalog for a schedule declared on a task; required in settings."""
    cron: str | None = None
    """Five fields, minute hour day-of-month month day-of-week, as croniter reads them:
    '*/5 * * * *', '0 9 * * mon-fri'."""
    every_seconds: float | None = Field(default=None, ge=1)
    timezone: str = "UTC"
    """The IANA zone a cron expression is read in (daylight saving included)."""
    payload: dict[str, JsonValue] = Field(default_factory=dict)
    priority: Priority = Priority.DEFAULT
    expires_seconds: float | None = Field(default=None, gt=0)
    """A tick's task not started within this many seconds of its tick ends EXPIRED."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name such as 'Europe/Paris'"
            ) from error
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(
                f"cron expression {value!r} is not valid; use five fields: minute hour "
                "day-of-month month day-of-week, e.g. '*/5 * * * *'"
            )
        return value

    @model_validator(mode="after")
    def _one_rule(self) -> Schedule:
        if (self.cron is None) == (self.every_seconds is None):
            raise ValueError("a schedule needs exactly one of cron and every_seconds")
        return self

    @property
    def key(self) -> str:
        """The name, once the catalog or settings filled it in."""
        if self.name is None:
            raise ValueError("schedule has no name yet")
        return self.name

    @property
    def rule(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        return f"every {self.every_seconds:g} s"

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (aware, UTC)."""
        if self.every_seconds is not None:
            step = self.every_seconds
            ticks = math.floor(moment.timestamp() / step) + 1
            return datetime.fromtimestamp(ticks * step, UTC)
        assert self.cron is not None  # one of the two rules, checked on construction
        zone = ZoneInfo(self.timezone)
        following: datetime = croniter(self.cron, moment.astimezone(zone)).get_next(datetime)
        return following.astimezone(UTC)

    def idempotency_key(self, tick: datetime) -> str:
        return f"schedule:{self.key}:{tick.astimezone(UTC).isoformat()}"

    def expires_at(self, tick: datetime) -> datetime | None:
        if self.expires_seconds is None:
            return None
        return tick + timedelta(seconds=self.expires_seconds)


class ScheduleStatus(BaseModel):
    """A periodic schedule and where it stands, as ``GET /schedules`` lists it."""

    name: str
    task: str
    rule: str
    """'cron <expr> (<zone>)' or 'every <n> s'."""
    cron: str | None
    every_seconds: float | None
    timezone: str
    payload: dict[str, JsonValue]
    priority: Priority
    expires_seconds: float | None
    next_run_at: datetime
    """The next tick not yet fired (computed from now until a scheduler has run)."""
    last_run_at: datetime | None
    last_task_id: str | None
    skipped: int
    """Ticks skipped because they were missed by more than the misfire grace."""
