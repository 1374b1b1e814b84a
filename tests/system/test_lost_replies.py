"""Replies lost between Redis and a client that then tries again, and a Redis that one API
process cannot reach while the rest of the platform can: made with a TCP proxy in front of the
suite's real Redis server (so in that mode only: a cluster client reaches its nodes where the
cluster says they are)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator

import pytest

from devstack import stack
from services.core.keys import new_task_id
from services.core.models import Progress
from services.core.redis_client import RedisClient, connect
from services.core.settings import Settings
from services.core.states import TaskState
from services.core.store import TaskStore
from tests.conftest import StartApps
from tests.helpers import eventually, submit, wait_status
from tests.system.test_faults import task_ids_in_redis
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.standalone_redis


@pytest.fixture
async def redis_proxy(backends: stack.StackState) -> AsyncIterator[TcpProxy]:
    assert backends.redis_server is not None
    proxy = await TcpProxy.start(backends.redis_server.port)
    yield proxy
    await proxy.close()


@pytest.fixture
async def proxied_store(redis_proxy: TcpProxy, settings: Settings) -> AsyncIterator[TaskStore]:
    client = connect(settings.model_copy(update={"redis_url": proxied_url(redis_proxy)}))
    store = TaskStore.from_settings(client, settings)
    await store.create(uuid.uuid4(), "noop", {})  # loads the scripts: later calls use EVALSHA
    yield store
    await client.aclose()


def proxied_url(proxy: TcpProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/0"


async def test_a_create_whose_reply_was_lost_is_not_refused_when_tried_again(
    proxied_store: TaskStore, redis_proxy: TcpProxy
) -> None:
    task_id = uuid.uuid4()
    redis_proxy.drop_next_reply(to_request_containing=b"EVALSHA")
    record, created = await proxied_store.create(task_id, "noop", {"echo": "once"})
    assert redis_proxy.dropped_replies == 1
    assert created
    assert (record.status, record.version) == (TaskState.PENDING, 1)


async def test_an_idempotent_create_whose_reply_was_lost_still_counts_as_created(
    proxied_store: TaskStore, redis_proxy: TcpProxy
) -> None:
    # Answered "already submitted" to its own retry, the API would skip the publish.
    key = f"lost-{uuid.uuid4()}"
    task_id = new_task_id(key)
    redis_proxy.drop_next_reply(to_request_containing=b"EVALSHA")
    record, created = await proxied_store.create(task_id, "noop", {}, idempotency_key=key)
    assert redis_proxy.dropped_replies == 1
    assert created
    assert record.id == task_id


async def test_a_start_whose_reply_was_lost_counts_one_attempt(
    proxied_store: TaskStore, redis_proxy: TcpProxy
) -> None:
    task_id = uuid.uuid4()
    await proxied_store.create(task_id, "noop", {})
    redis_proxy.drop_next_reply(to_request_containing=b"EVALSHA")
    started = await proxied_store.transition(
        task_id, TaskState.PROGRESS, progress=Progress(percent=0), start_delivery="t/0/7"
    )
    assert redis_proxy.dropped_replies == 1
    assert started.attempts == 1
    assert [r.status for r in await proxied_store.history(task_id)] == ["PENDING", "PROGRESS"]


async def test_an_api_whose_create_reply_was_lost_still_publishes_the_task(
    start_apps: StartApps, namespace: str, redis_proxy: TcpProxy
) -> None:
    apps = await asyncio.to_thread(
        start_apps, namespace, env={"KT_REDIS_URL": proxied_url(redis_proxy)}
    )
    async with apps.client() as client:
        await submit(client, "noop", {})  # warm: the scripts are loaded
        redis_proxy.drop_next_reply(to_request_containing=b"EVALSHA")
        response = await client.post(
            "/tasks",
            json={"task": "noop", "payload": {"echo": "k"}},
            headers={"Idempotency-Key": "k1"},
        )
        assert response.status_code == 202, response.text
        assert redis_proxy.dropped_replies == 1
        final = await wait_status(client, response.json()["id"], "COMPLETE", within=30)
    assert final["result"] == "k"


async def test_a_confirmation_lost_after_the_broker_acknowledged_is_still_a_202(
    start_apps: StartApps,
    namespace: str,
    backends: stack.StackState,
    redis_proxy: TcpProxy,
    redis_client: RedisClient,
) -> None:
    # The worker reaches Redis directly; only the API loses it, between Kafka's ack and the
    # confirmation. The task is stored and on Kafka: it will run, so the answer is 202.
    apps = await asyncio.to_thread(
        start_apps,
        namespace,
        workers=0,
        env={"KT_REDIS_URL": proxied_url(redis_proxy), "KT_REDIS_TIMEOUT_SECONDS": "1"},
    )
    worker_env = {"KT_REDIS_URL": backends.redis_url}
    workers = await asyncio.to_thread(start_apps, namespace, api=False, env=worker_env)
    broker = backends.kafka_nodes[0].pid
    async with apps.client() as client:
        await submit(client, "noop", {})
        os.kill(broker, signal.SIGSTOP)
        try:
            submission = asyncio.create_task(
                client.post("/tasks", json={"task": "noop", "payload": {"echo": "acked"}})
            )
            # Its PENDING record is stored; now the API waits for the broker.
            await eventually(
                lambda: task_ids_in_redis(redis_client, namespace), lambda ids: len(ids) == 2
            )
            redis_proxy.block()
        finally:
            os.kill(broker, signal.SIGCONT)
        response = await asyncio.wait_for(submission, timeout=30)
        redis_proxy.unblock()
        assert response.status_code == 202, response.text
        final = await wait_status(client, response.json()["id"], "COMPLETE", within=60)
    assert final["result"] == "acked"
    assert final["attempts"] == 1
    assert workers.workers
