"""Rate limits and concurrency limits, shared by every worker through Redis.

Rate: a token bucket of one token in its GCRA form (one timestamp per task), taken in one Lua
script that *reserves* the next free slot: a task over its limit learns when its turn is and
is held back until then, so N waiting tasks cost N reservations, not N retries per second.

Concurrency: per value of the payload field named by the task's ``ConcurrencyLimit``, a
sorted set of the running task ids scored by lease end (renewed with the attempt's lease, so a
dead worker's slots free themselves) and a list of waiters, the first of which is woken when
a slot frees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import JsonValue

from services.core import state_scripts
from services.core.keys import RedisKeys
from services.core.limits import ConcurrencyLimit, RateLimit
from services.core.redis_client import RedisClient


@dataclass(frozen=True)
class Slot:
    """A rate-limit slot: when the task may start, both on Redis's clock (µs)."""

    at_us: int
    now_us: int

    @property
    def wait_seconds(self) -> float:
        return max(self.at_us - self.now_us, 0) / 1_000_000


class Admission(StrEnum):
    ACQUIRED = "acquired"
    HELD = "held"
    """The task holds a slot already (an earlier delivery of the same attempt)."""
    FULL = "full"


@dataclass(frozen=True)
class ConcurrencyKey:
    """One running slot's address: the task, the key's value, the task id."""

    task: str
    value: str
    task_id: UUID


def concurrency_value(limit: ConcurrencyLimit, payload: dict[str, JsonValue]) -> str:
    """The concurrency key's value in ``payload``, as canonical JSON (a missing field is
    ``null``: those tasks share one group)."""
    return json.dumps(payload.get(limit.key), sort_keys=True, separators=(",", ":"))


Guard = Callable[[Awaitable[Any]], Awaitable[Any]]
"""Awaits a Redis call within the backend timeout, its errors classified (TaskStore's)."""


class Limiter:
    def __init__(
        self, redis: RedisClient, keys: RedisKeys, guard: Guard, *, lease_seconds: float
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._guard = guard
        self._lease = lease_seconds
        self._rate = redis.register_script(state_scripts.RATE_SLOT)
        self._acquire = redis.register_script(state_scripts.CONCURRENCY_ACQUIRE)
        self._release = redis.register_script(state_scripts.CONCURRENCY_RELEASE)
        self._wake = redis.register_script(state_scripts.WAKE)

    async def reserve(self, task: str, limit: RateLimit) -> Slot:
        """Reserve the task's next start slot (now, or later when over its limit)."""
        interval_us = max(int(limit.interval_seconds * 1_000_000), 1)
        slot, now = await self._call(
            self._rate(keys=[self._keys.rate_bucket(task)], args=[interval_us])
        )
        return Slot(int(slot), int(now))

    async def acquire(self, key: ConcurrencyKey, limit: ConcurrencyLimit) -> Admission:
        now = time.time()
        answer = await self._call(
            self._acquire(
                keys=[
                    self._keys.concurrency_slots(key.task, key.value),
                    self._keys.concurrency_waiters(key.task, key.value),
                ],
                args=[str(key.task_id), limit.limit, _ms(now), _ms(now + self._lease)],
            )
        )
        return Admission(_decode(answer))

    async def release(self, key: ConcurrencyKey) -> UUID | None:
        """Free the task's slot; returns the waiter it woke, if any. Waiters are taken off
        the list one by one (the slots' script) and woken in their own shard (a script on
        their record and timers); one that waits no more is passed over."""
        keys = [
            self._keys.concurrency_slots(key.task, key.value),
            self._keys.concurrency_waiters(key.task, key.value),
        ]
        freed = str(key.task_id)
        while True:
            waiter = _decode(await self._call(self._release(keys=keys, args=[freed])))
            if not waiter:
                return None
            freed = ""
            woken = await self._call(
                self._wake(
                    keys=state_scripts.WAKE_KEYS.resolve(self._keys, UUID(waiter)),
                    args=[waiter, _ms(time.time())],
                )
            )
            if int(woken):
                return UUID(waiter)

    async def renew(self, held: Iterable[ConcurrencyKey]) -> None:
        """Extend the slots of running attempts with their leases."""
        held = list(held)
        if not held:
            return
        lease_end = _ms(time.time() + self._lease)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in held:
                pipe.zadd(
                    self._keys.concurrency_slots(key.task, key.value),
                    {str(key.task_id): lease_end},
                    xx=True,
                )
            await self._call(pipe.execute())

    async def running(self, task: str, value: str) -> list[UUID]:
        members = await self._call(
            self._redis.zrangebyscore(
                self._keys.concurrency_slots(task, value), _ms(time.time()), "+inf"
            )
        )
        return [UUID(_decode(member)) for member in members]

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        return await self._guard(awaitable)


def _ms(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1000)


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
