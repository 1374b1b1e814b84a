"""Event streams on the real stack: how many one API process serves, and that they neither
starve ordinary requests nor die while a task is quiet."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from uuid import UUID

from httpx_sse import ServerSentEvent, aconnect_sse

from services.core.models import Progress
from services.core.states import TaskState
from services.core.store import TaskStore
from tests.conftest import StartApps
from tests.helpers import eventually, submit


async def _first_state(events: AsyncIterator[ServerSentEvent]) -> str:
    """Reads up to the first state event. The caller keeps ``events`` referenced: an
    abandoned ``aiter_sse`` generator is finalised, and that closes its stream."""
    async for event in events:
        if event.event == "state":
            status: str = json.loads(event.data)["status"]
            return status
    raise AssertionError("the stream ended before its first state")


async def test_streams_over_the_limit_get_503_and_requests_still_get_through(
    start_apps: StartApps, namespace: str
) -> None:
    # Two streams per process and two pooled connections for everything else: small enough
    # to hit both limits with a handful of requests.
    apps = start_apps(
        namespace,
        workers=0,  # no worker: the tasks stay PENDING and their streams stay open
        env={"KT_API_MAX_EVENT_STREAMS": "2", "KT_REDIS_MAX_CONNECTIONS": "2"},
    )
    async with apps.client() as client, AsyncExitStack() as open_streams:
        ids = [(await submit(client, "sleep", {"seconds": 1}))["id"] for _ in range(3)]
        followed: list[AsyncIterator[ServerSentEvent]] = []
        for task_id in ids[:2]:
            # A client per stream, as separate followers would have.
            own = await open_streams.enter_async_context(apps.client())
            source = await open_streams.enter_async_context(
                aconnect_sse(own, "GET", f"/tasks/{task_id}/events")
            )
            assert source.response.status_code == 200
            followed.append(source.aiter_sse())
            assert await _first_state(followed[-1]) == "PENDING"

        refused = await client.get(f"/tasks/{ids[2]}/events")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "as many event streams as it may (2)" in refused.json()["detail"]
        assert f"poll GET /tasks/{ids[2]}" in refused.json()["detail"]

        # Thirty reads at once over two pooled connections: they wait their turn, none fails
        # (redis-py's default pool answered "Too many connections", a 503, beyond its size).
        reads = await asyncio.gather(*(client.get(f"/tasks/{ids[i % 3]}") for i in range(30)))
        assert [r.status_code for r in reads] == [200] * 30
        submitted = await submit(client, "noop")
        assert submitted["status"] == "PENDING"

    # The two streams are closed now: their slots come back and a new stream is admitted.
    async def open_one() -> int:
        async with (
            apps.client() as fresh,
            aconnect_sse(fresh, "GET", f"/tasks/{ids[2]}/events") as source,
        ):
            if source.response.status_code == 200:
                assert await _first_state(source.aiter_sse()) == "PENDING"
            return source.response.status_code

    assert await eventually(open_one, lambda code: code == 200, within=20) == 200


async def test_a_quiet_stream_outlives_the_redis_timeout(
    start_apps: StartApps, namespace: str, store: TaskStore
) -> None:
    # A stream waits on Redis for up to 15 s per read; its socket timeout must be longer,
    # or a task that stays quiet for a few seconds breaks its stream.
    apps = start_apps(namespace, workers=0, env={"KT_REDIS_TIMEOUT_SECONDS": "1"})
    async with apps.client() as client:
        task_id = (await submit(client, "sleep", {"seconds": 1}))["id"]
        async with aconnect_sse(client, "GET", f"/tasks/{task_id}/events") as source:
            assert source.response.status_code == 200
            states = source.aiter_sse()
            first = await anext(states)
            assert json.loads(first.data)["status"] == "PENDING"
            # The silence is what is under test: longer than the 1 s timeout and the three
            # retries the client makes after it.
            await asyncio.sleep(6)
            await store.transition(
                UUID(task_id),
                TaskState.PROGRESS,
                progress=Progress(percent=50, message="half way"),
                start_delivery="test/0/0",
            )
            await store.transition(UUID(task_id), TaskState.CANCELLED)
            rest = [json.loads(event.data)["status"] async for event in states]
    assert rest == ["PROGRESS", "CANCELLED"]


async def test_a_stream_for_an_unknown_task_gives_its_slot_back(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace, workers=0, env={"KT_API_MAX_EVENT_STREAMS": "1"})
    async with apps.client() as client:
        for _ in range(3):  # each 404 must free the single slot, or the next would be 503
            missing = await client.get("/tasks/00000000-0000-4000-8000-000000000000/events")
            assert missing.status_code == 404
        task_id = (await submit(client, "sleep", {"seconds": 1}))["id"]
        async with aconnect_sse(client, "GET", f"/tasks/{task_id}/events") as source:
            assert source.response.status_code == 200
            assert await _first_state(source.aiter_sse()) == "PENDING"
