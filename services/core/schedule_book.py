"""Where the periodic scheduler keeps its leader lease and each schedule's progress (Redis).

One worker leads at a time: it holds ``scheduler:leader`` (a lease it renews; SET NX PX). A
schedule moves past a tick only by its leader and only from that tick (one script), and the
tick's submission carries the Idempotency-Key ``schedule:<name>:<tick>``: a leader that dies
between the submission and the move, or two workers that both believe they lead for a moment,
submit the tick again and get the same task. Each tick fires once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.core import state_scripts
from services.core.keys import RedisKeys
from services.core.redis_client import RedisClient

Guard = Callable[[Awaitable[Any]], Awaitable[Any]]


@dataclass(frozen=True)
class ScheduleProgress:
    next_tick: datetime | None
    """The next tick not yet fired (None before any scheduler looked at it)."""
    last_tick: datetime | None
    last_task: str | None
    skipped: int


class ScheduleBook:
    def __init__(self, redis: RedisClient, keys: RedisKeys, guard: Guard) -> None:
        self._redis = redis
        self._keys = keys
        self._guard = guard
        self._lead = redis.register_script(state_scripts.LEAD)
        self._advance = redis.register_script(state_scripts.ADVANCE)

    async def lead(self, token: str, *, lease_seconds: float) -> bool:
        """Take the leader lease if it is free, renew it if ``token`` holds it."""
        answer = await self._guard(
            self._lead(keys=[self._keys.scheduler_leader], args=[token, int(lease_seconds * 1000)])
        )
        return int(answer) == 1

    async def leader(self) -> str | None:
        holder = await self._guard(self._redis.get(self._keys.scheduler_leader))
        return _decode(holder) if holder else None

    async def advance(
        self,
        name: str,
        token: str,
        *,
        tick: datetime,
        following: datetime,
        task_id: str | None,
        skipped: int = 0,
    ) -> str:
        """Move schedule ``name`` from ``tick`` to ``following``: 'ok', 'not-leader' (the
        lease is lost) or 'moved' (another leader moved it already)."""
        answer = await self._guard(
            self._advance(
                keys=[self._keys.scheduler_leader, self._keys.schedule(name)],
                args=[token, _ms(tick), _ms(following), task_id or "", skipped],
            )
        )
        return _decode(answer)

    async def start(self, name: str, first: datetime) -> None:
        """Give a schedule no scheduler has seen yet its first tick."""
        await self._guard(self._redis.hsetnx(self._keys.schedule(name), "next", str(_ms(first))))

    async def progress(self, names: list[str]) -> dict[str, ScheduleProgress]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self._keys.schedule(name))
            rows = await self._guard(pipe.execute())
        found = {}
        for name, row in zip(names, rows, strict=True):
            fields = {_decode(k): _decode(v) for k, v in row.items()}
            found[name] = ScheduleProgress(
                next_tick=_time(fields.get("next")),
                last_tick=_time(fields.get("last")),
                last_task=fields.get("last_task"),
                skipped=int(fields.get("skipped", "0")),
            )
        return found


def _time(ms: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, UTC) if ms else None


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
