"""POST /tasks/batch: many tasks in one request, all or nothing."""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis

from devstack import stack
from services.client import AsyncClient
from tests.api.test_input import stored_keys
from tests.conftest import AppStack
from tests.helpers import wait_status


async def test_a_batch_is_accepted_in_order_and_every_task_runs(
    apps: AppStack, client: httpx.AsyncClient
) -> None:
    tasks = [{"task": "noop", "payload": {"echo": f"n{i}"}} for i in range(40)]
    tasks += [{"task": "sleep", "payload": {"seconds": 0.2, "steps": 1}}]
    response = await client.post("/tasks/batch", json={"tasks": tasks})

    assert response.status_code == 202, response.text
    items = response.json()["items"]
    assert [item["task"] for item in items] == ["noop"] * 40 + ["sleep"]
    assert {item["status"] for item in items} == {"PENDING"}
    finals = [await wait_status(client, item["id"], "COMPLETE", within=60) for item in items]
    assert [f["result"] for f in finals[:40]] == [f"n{i}" for i in range(40)]


async def test_one_bad_task_refuses_the_whole_batch_naming_each_error_by_index(
    api_client: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    tasks = [
        {"task": "noop", "payload": {"echo": "fine"}},
        {"task": "nope"},
        {"task": "sleep", "payload": {"steps": 0}},
        {"task": "noop", "payload": {"echo": "x" * 300_000}},
    ]
    response = await api_client.post("/tasks/batch", json={"tasks": tasks})
    too_many = await api_client.post("/tasks/batch", json={"tasks": [{"task": "noop"}] * 1001})
    empty = await api_client.post("/tasks/batch", json={"tasks": []})
    read = await api_client.get("/tasks/batch")  # not GET /tasks/<id> with a bad id

    assert response.status_code == 404, response.text  # an unknown task, as for one task
    located = {tuple(error["loc"][:4]) for error in response.json()["detail"]}
    assert located == {
        ("body", "tasks", 1, "task"),
        ("body", "tasks", 2, "payload"),
        ("body", "tasks", 3, "payload"),
    }
    assert too_many.status_code == 422
    assert "1 to 1000 tasks" in too_many.json()["detail"]
    assert empty.status_code == 422
    assert read.status_code == 405
    assert read.headers["allow"] == "POST"
    assert await stored_keys(redis_client, namespace) == []


async def test_the_same_batch_with_the_same_key_returns_the_same_tasks(
    apps: AppStack, client: httpx.AsyncClient
) -> None:
    batch = {"tasks": [{"task": "noop", "payload": {"echo": str(i)}} for i in range(5)]}
    headers = {"Idempotency-Key": "batch-7"}
    first = await client.post("/tasks/batch", json=batch, headers=headers)
    again = await client.post("/tasks/batch", json=batch, headers=headers)
    other = await client.post("/tasks/batch", json={"tasks": batch["tasks"][::-1]}, headers=headers)

    assert first.status_code == again.status_code == 202
    assert [i["id"] for i in again.json()["items"]] == [i["id"] for i in first.json()["items"]]
    assert other.status_code == 409


async def test_a_batch_refused_while_kafka_is_down_leaves_nothing(
    apps: AppStack,
    client: httpx.AsyncClient,
    backends: stack.StackState,
    redis_client: Redis,
    namespace: str,
) -> None:
    await asyncio.to_thread(stack.stop_kafka, backends)
    try:
        refused = await client.post(
            "/tasks/batch", json={"tasks": [{"task": "noop"} for _ in range(10)]}
        )
        keys = await stored_keys(redis_client, namespace)
    finally:
        await asyncio.to_thread(stack.restart_kafka, backends)
    assert refused.status_code == 503, refused.text
    assert not [key for key in keys if b":task:" in key]


async def test_the_client_submits_a_batch(apps: AppStack) -> None:
    assert apps.api is not None
    async with AsyncClient(apps.api.url) as tasks:
        records = await tasks.submit_many([("noop", {"echo": "a"}), ("noop", None)])
        finals = [await tasks.wait(record.id, timeout=60) for record in records]
    assert [f.result for f in finals] == ["a", None]
