"""The Redis client the services share, against the real Redis."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from redis.asyncio import Connection
from redis.exceptions import MaxConnectionsError

from devstack import stack
from services.core.redis_client import connect, past_closed_transports
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


async def test_a_command_whose_connection_was_closed_under_it_is_sent_again(
    backends: stack.StackState,
) -> None:
    # What redis-py 8.1 lets happen when one task disconnects idle connections while another
    # picks one up: the write meets a closed transport, which uvloop (the services' loop)
    # reports as RuntimeError, not a RedisError. The command is sent again on a fresh one.
    assert backends.redis_server is not None
    port = backends.redis_server.port

    async def scenario() -> tuple[bytes, int, str]:
        connection = Connection(port=port)
        await connection.connect()
        sends, first_error = 0, ""

        async def ping() -> bytes:
            nonlocal sends, first_error
            sends += 1
            try:
                await connection.send_packed_command(connection.pack_command("PING"))
            except RuntimeError as error:
                first_error = str(error)
                raise
            answer: bytes = await connection.read_response()
            return answer

        assert connection._writer is not None
        connection._writer.transport.close()  # another task's disconnect()
        await asyncio.sleep(0)
        answer = await past_closed_transports(ping)
        await connection.disconnect()
        return answer, sends, first_error

    answer, sends, first_error = await asyncio.to_thread(uvloop.run, scenario())
    assert "closed" in first_error
    assert (answer, sends) == (b"PONG", 2)


async def test_our_own_attribute_errors_are_not_mistaken_for_a_closed_connection() -> None:
    async def bug() -> None:
        raise AttributeError("a bug of ours")

    with pytest.raises(AttributeError, match="a bug of ours"):
        await past_closed_transports(bug)
