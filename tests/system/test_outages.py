"""Outages that last: Redis killed or paused for tens of seconds, across every timer tick of the
worker, and a broker paused while a submission waits for its acknowledgement."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaError

from devstack import processes, stack
from services.core.lag import PartitionLag, group_lag
from services.core.redis_client import RedisClient
from services.core.settings import Settings
from tests.conftest import StartApps
from tests.helpers import eventually, submit, wait_status
from tests.system.test_faults import task_ids_in_redis

OUTAGE_SECONDS = 30


def readiness(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return 0


@pytest.mark.standalone_redis
async def test_a_redis_outage_longer_than_every_timer_leaves_the_workers_running(
    start_apps: StartApps, namespace: str, backends: stack.StackState
) -> None:
    apps = start_apps(
        namespace,
        env={"KT_WORKER_SWEEP_INTERVAL_SECONDS": "1", "KT_REDIS_TIMEOUT_SECONDS": "1"},
    )
    worker = apps.workers[0]
    assert backends.redis_server is not None
    async with apps.client() as client:
        accepted = [await submit(client, "noop", {"echo": str(i)}) for i in range(20)]
        accepted += [await submit(client, "sleep", {"seconds": 3, "steps": 3}) for _ in range(20)]

        await asyncio.to_thread(processes.kill, backends.redis_server.pid)
        seen: list[int] = []
        try:
            # Thirty sweeper ticks without Redis: the worker must wait it out, alive.
            ends = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < ends:
                assert processes.alive(worker.pid), processes.tail(Path(worker.log))
                seen.append(await asyncio.to_thread(readiness, worker.url))
                await asyncio.sleep(1)
        finally:
            await asyncio.to_thread(stack.start_redis_again, backends)

        finals = [await wait_status(client, a["id"], "COMPLETE", within=120) for a in accepted]

    assert processes.alive(worker.pid)
    assert 503 in seen, "readiness must report the outage"
    assert await asyncio.to_thread(readiness, worker.url) == 200
    assert [f["result"] for f in finals[:20]] == [str(i) for i in range(20)]
    assert {f["status"] for f in finals} == {"COMPLETE"}


async def timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


@pytest.mark.standalone_redis
async def test_a_paused_redis_turns_requests_into_prompt_503s_and_loses_nothing(
    start_apps: StartApps, namespace: str, backends: stack.StackState
) -> None:
    timeout = 2.0
    apps = start_apps(namespace, env={"KT_REDIS_TIMEOUT_SECONDS": str(timeout)})
    assert backends.redis_server is not None
    redis_pid = backends.redis_server.pid
    async with apps.client() as client:
        accepted = [await submit(client, "sleep", {"seconds": 2, "steps": 4}) for _ in range(10)]
        accepted += [await submit(client, "noop", {}) for _ in range(10)]

        os.kill(redis_pid, signal.SIGSTOP)
        try:
            answers = []
            for _ in range(5):  # bounded: a few requests of each kind during a 25 s pause
                answers.append(await timed(client.post("/tasks", json={"task": "noop"})))
                answers.append(await timed(client.get(f"/tasks/{accepted[0]['id']}")))
                answers.append(await timed(client.post(f"/tasks/{accepted[-1]['id']}/cancel")))
            if (rest := 25 - sum(elapsed for _, elapsed in answers)) > 0:
                await asyncio.sleep(rest)  # the pause itself: a fault of a fixed length
            assert all(processes.alive(w.pid) for w in apps.workers)
        finally:
            os.kill(redis_pid, signal.SIGCONT)

        finals = [
            await wait_status(client, a["id"], "COMPLETE", "CANCELLED", within=90) for a in accepted
        ]

    assert [r.status_code for r, _ in answers] == [503] * len(answers)
    assert all(r.headers["retry-after"] for r, _ in answers)
    assert all("redis is unavailable" in r.json()["detail"] for r, _ in answers)
    slowest = max(elapsed for _, elapsed in answers)
    # One backend call that times out, plus room for a noisy machine: not 4 tries of it.
    assert slowest < timeout + 1.5, f"a request took {slowest:.1f} s with Redis paused"
    assert {f["status"] for f in finals[:-1]} == {"COMPLETE"}


async def test_a_submission_refused_while_a_broker_stalls_never_runs_later(
    start_apps: StartApps,
    namespace: str,
    backends: stack.StackState,
    settings: Settings,
    redis_client: RedisClient,
) -> None:
    # The producer keeps the message it could not deliver in time and sends it once the broker
    # is back: the API answered 503, so that late copy must not run.
    apps = start_apps(namespace, env={"KT_KAFKA_REQUEST_TIMEOUT_MS": "2000"})
    broker = backends.kafka_nodes[0].pid
    async with apps.client() as client:
        accepted = await submit(client, "noop", {"echo": "before"})
        await wait_status(client, accepted["id"], "COMPLETE")
        os.kill(broker, signal.SIGSTOP)
        try:
            refused = await client.post("/tasks", json={"task": "noop", "payload": {"echo": "x"}})
        finally:
            os.kill(broker, signal.SIGCONT)
        after = await submit(client, "noop", {"echo": "after"})
        await wait_status(client, after["id"], "COMPLETE", within=60)

    assert refused.status_code == 503, refused.text
    topic = settings.task_topic("noop")
    # Every message of the topic, the late copy included, has been handled by now.
    rows = await eventually(
        lambda: lag_or_none(settings, topic),
        lambda rows: rows is not None and all(r.lag == 0 for r in rows),
        within=60,
    )
    assert rows is not None
    assert sum(r.end_offset for r in rows) >= 2
    assert await task_ids_in_redis(redis_client, namespace) == {accepted["id"], after["id"]}


async def lag_or_none(settings: Settings, topic: str) -> list[PartitionLag] | None:
    """The group's lag, or None while the cluster's metadata settles after a fault."""
    try:
        return await group_lag(settings.kafka_bootstrap_servers, settings.consumer_group, [topic])
    except KafkaError:
        return None
