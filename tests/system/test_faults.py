"""Whole-system faults on the real stack: Kafka down, Redis down or restarted, an API that died
between storing a task and publishing it."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import processes, stack
from services.core.keys import SHARDS, RedisKeys
from services.core.redis_client import RedisClient
from services.core.settings import Settings
from services.core.state_codec import text
from services.core.store import TaskStore
from tests.conftest import StartApps
from tests.helpers import eventually, submit, wait_status


async def task_ids_in_redis(redis: RedisClient, namespace: str) -> set[str]:
    """The ids of every record of the namespace, found by scanning the key space (all nodes
    of a cluster), not through the indexes."""
    keys = RedisKeys(namespace)
    found = [text(key) async for key in redis.scan_iter(match=keys.record_pattern)]
    return {keys.after_kind(key, "task") for key in found}


async def deadlines_held(redis: RedisClient, namespace: str) -> int:
    """Live tasks with a deadline, over every shard."""
    keys = RedisKeys(namespace)
    return sum([await redis.zcard(keys.deadlines(shard)) for shard in range(SHARDS)])


async def submit_when_ready(
    client: httpx.AsyncClient, task: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Submit, retrying 503s while a backend comes back (at most 30 tries)."""
    for _ in range(30):
        response = await client.post("/tasks", json={"task": task, "payload": payload})
        if response.status_code == 202:
            body: dict[str, Any] = response.json()
            return body
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.5)  # the client's backoff between retries, as Retry-After asks
    raise AssertionError("the API never accepted the task again")


async def test_kafka_down_means_503_and_no_orphans_then_normal_service(
    start_apps: StartApps, namespace: str, backends: stack.StackState, redis_client: RedisClient
) -> None:
    apps = start_apps(namespace, env={"KT_KAFKA_REQUEST_TIMEOUT_MS": "2000"})
    async with apps.client() as client:
        accepted = [await submit(client, "noop", {"echo": f"before-{i}"}) for i in range(5)]

        await asyncio.to_thread(stack.stop_kafka, backends)
        try:
            refused = [
                await client.post("/tasks", json={"task": "noop", "payload": {"echo": "down"}})
                for _ in range(5)
            ]
            ready = await client.get("/readyz")
            orphans = await task_ids_in_redis(redis_client, namespace) - {a["id"] for a in accepted}
        finally:
            await asyncio.to_thread(stack.restart_kafka, backends)

        assert [r.status_code for r in refused] == [503] * 5
        assert all("kafka is unavailable" in r.json()["detail"] for r in refused)
        assert refused[0].headers["retry-after"] == "1"
        assert ready.status_code == 503
        assert orphans == set(), "a 503 must leave no PENDING record behind"

        accepted += [
            await submit_when_ready(client, "noop", {"echo": f"after-{i}"}) for i in range(5)
        ]
        finals = [await wait_status(client, a["id"], "COMPLETE", within=90) for a in accepted]
        summary = (await client.get("/dashboard/summary")).json()

    assert len(finals) == 10
    # The refused submissions left nothing in the listing indexes either.
    assert summary["counts"]["noop"]["PENDING"] == 0
    assert summary["counts"]["noop"]["COMPLETE"] == 10
    assert await task_ids_in_redis(redis_client, namespace) == {a["id"] for a in accepted}


@pytest.mark.standalone_redis
async def test_redis_down_means_503_and_a_restart_loses_no_running_task(
    start_apps: StartApps, namespace: str, backends: stack.StackState
) -> None:
    apps = start_apps(namespace, env={"KT_REDIS_TIMEOUT_SECONDS": "1"})
    async with apps.client() as client:
        running = [await submit(client, "sleep", {"seconds": 4, "steps": 8}) for _ in range(4)]
        queued = [await submit(client, "noop", {"echo": str(i)}) for i in range(4)]
        for task in running:
            await wait_status(client, task["id"], "PROGRESS")

        await asyncio.to_thread(stack.stop_redis, backends)
        try:
            refused = await client.post("/tasks", json={"task": "noop", "payload": {}})
        finally:
            await asyncio.to_thread(
                stack.start_redis_again, backends
            )  # AOF on: what was written is back

        assert refused.status_code == 503
        assert "redis is unavailable" in refused.json()["detail"]
        # The API's pooled connections died with Redis; the very next request still succeeds.
        after = await submit(client, "noop", {"echo": "after the restart"})
        finals = [
            await wait_status(client, t["id"], "COMPLETE", within=90)
            for t in [*running, *queued, after]
        ]
    assert {r["status"] for r in finals} == {"COMPLETE"}
    assert [r["result"] for r in finals[:4]] == [{"slept_seconds": 4.0}] * 4
    assert finals[-1]["result"] == "after the restart"


async def test_a_task_whose_api_died_before_publishing_it_runs_anyway(
    start_apps: StartApps, namespace: str, settings: Settings, redis_client: RedisClient
) -> None:
    # What an API that died between the Redis write and the broker's ack leaves behind:
    # a PENDING record, never confirmed, whose message may or may not exist. The client got
    # no answer, so either outcome is allowed; the reaper makes it run rather than hang.
    lost_in_api = TaskStore(
        redis_client, namespace=namespace, result_ttl_seconds=60, publish_deadline_seconds=0.5
    )
    task_id = uuid.uuid4()
    await lost_in_api.create(task_id, "noop", {"echo": "published late"})

    apps = start_apps(
        namespace,
        env={"KT_WORKER_SWEEP_INTERVAL_SECONDS": "0.5", "KT_WORKER_LEASE_SECONDS": "2"},
    )
    async with apps.client() as client:
        final = await wait_status(client, str(task_id), "COMPLETE", within=30)
        # A task that was published normally is not touched by the reaper.
        normal = await submit(client, "sleep", {"seconds": 1.5, "steps": 3})
        normal_final = await wait_status(client, normal["id"], "COMPLETE")

    assert final["result"] == "published late"
    assert final["attempts"] == 1
    assert normal_final["attempts"] == 1
    assert (
        await eventually(
            lambda: deadlines_held(redis_client, namespace), lambda n: n == 0, within=5
        )
        == 0
    )


async def test_sigterm_lets_the_api_finish_in_flight_requests_before_it_exits(
    start_apps: StartApps, namespace: str, backends: stack.StackState, redis_client: RedisClient
) -> None:
    apps = start_apps(namespace)
    assert apps.api is not None
    api = apps.api
    broker = backends.kafka_nodes[0].pid
    async with apps.client() as client:
        # Freeze the broker so that a submission stays in flight, waiting for its ack.
        os.kill(broker, signal.SIGSTOP)
        try:
            in_flight = asyncio.create_task(
                client.post("/tasks", json={"task": "noop", "payload": {"echo": "in flight"}})
            )
            # Its PENDING record is written before the publish: now it waits on Kafka.
            await eventually(
                lambda: task_ids_in_redis(redis_client, namespace), lambda ids: len(ids) == 1
            )
            stack.signal_app(api, "TERM")
        finally:
            os.kill(broker, signal.SIGCONT)
        response = await asyncio.wait_for(in_flight, timeout=30)

    assert response.status_code == 202, response.text
    assert await asyncio.to_thread(
        processes.wait_for, lambda: not processes.alive(api.pid), timeout=30
    )
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
    assert processes.exit_code(api.pid) in (0, -signal.SIGTERM)
    log = await asyncio.to_thread(Path(api.log).read_text)
    assert "Application shutdown complete" in log
    assert "Finished server process" in log
