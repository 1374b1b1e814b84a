"""The Redis client the services share, against the real Redis."""

from __future__ import annotations

import asyncio

from redis.exceptions import MaxConnectionsError

from services.core.redis_client import connect
from services.core.settings import Settings


async def test_a_busy_pool_makes_calls_wait_for_a_connection(settings: Settings) -> None:
    client = connect(settings, max_connections=2)
    try:
        answers = await asyncio.gather(*(client.ping() for _ in range(50)))
    finally:
        await client.aclose()
    assert answers == [True] * 50


async def test_without_waiting_a_full_pool_fails_at_once(settings: Settings) -> None:
    # What redis-py's default pool does, and why the services wait instead: under a burst,
    # this was the API's "redis is unavailable" 503 with Redis perfectly healthy.
    client = connect(settings, max_connections=2, wait_for_connection=False)
    try:
        answers = await asyncio.gather(*(client.ping() for _ in range(50)), return_exceptions=True)
    finally:
        await client.aclose()
    refused = [a for a in answers if isinstance(a, MaxConnectionsError)]
    assert refused, "50 calls at once over 2 connections: some must be refused"
    assert all(a is True for a in answers if a not in refused)


async def test_the_read_timeout_can_outlast_a_blocking_read(settings: Settings) -> None:
    quick = settings.model_copy(update={"redis_timeout_seconds": 0.2})
    client = connect(quick, read_timeout_seconds=2.0)
    try:
        # XREAD blocking 0.5 s on a stream nobody writes: longer than the 0.2 s timeout.
        answer = await client.xread({f"{settings.key_prefix}quiet": "$"}, block=500)
    finally:
        await client.aclose()
    assert answer == []
