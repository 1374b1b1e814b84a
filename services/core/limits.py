"""Per-task limits declared in the catalog: a rate limit shared by every worker, and a
concurrency limit per value of a payload field (Hatchet's concurrency keys)."""

from __future__ import annotations

import re
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")
_PERIOD_SECONDS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}


class RateLimit(BaseModel):
    """At most ``count`` starts per ``period_seconds``, across all workers, evenly spaced (a
    token bucket of one token, like Celery's ``rate_limit``)."""

    model_config = ConfigDict(frozen=True)

    count: float = Field(gt=0)
    period_seconds: float = Field(gt=0)

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Celery's notation: ``"100/m"``, ``"10/s"``, ``"5/h"``, or a plain number per second."""
        match = _RATE.match(text)
        if not match or float(match.group(1)) <= 0:
            raise ValueError(
                f"rate limit {text!r} is not understood; write it as a positive number of "
                "starts per second, minute or hour: '10/s', '100/m', '5/h'"
            )
        return cls(
            count=float(match.group(1)), period_seconds=_PERIOD_SECONDS[match.group(2) or "s"]
        )

    @property
    def interval_seconds(self) -> float:
        """The spacing of starts."""
        return self.period_seconds / self.count

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.period_seconds)
        return f"{self.count:g}/{unit}" if unit else f"{self.count:g}/{self.period_seconds:g}s"


class ConcurrencyLimit(BaseModel):
    """At most ``limit`` attempts run at once for the same value of the payload field ``key``
    (e.g. per customer). Tasks over the limit wait, without holding a partition, and are woken
    when one ends."""

    model_config = ConfigDict(frozen=True)

    key: str = Field(min_length=1, description="A field of the task's payload model.")
    limit: int = Field(default=1, ge=1, le=10_000)
