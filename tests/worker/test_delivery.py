"""At-least-once delivery on the real stack: ordered commits under concurrency, duplicates,
SIGKILL mid-task and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
from aiokafka import AIOKafkaProducer

from devstack import processes, stack
from services.core.lag import group_lag
from services.core.redis_client import RedisClient
from services.core.settings import Settings
from services.core.store import TaskStore
from tests.conftest import AppStack, StartApps
from tests.helpers import eventually, record_of, submit, wait_status

ONE_PARTITION = {"KT_TOPIC_PARTITIONS": "1"}


async def committed_offset(settings: Settings, topic: str) -> int | None:
    rows = await group_lag(settings.kafka_bootstrap_servers, settings.consumer_group, [topic])
    return rows[0].committed


async def test_offsets_advance_only_over_finished_tasks_while_many_run_at_once(
    start_apps: StartApps, namespace: str, settings: Settings
) -> None:
    apps = start_apps(namespace, env=ONE_PARTITION)
    topic = settings.task_topic("sleep")
    async with apps.client() as client:
        slow = await submit(client, "sleep", {"seconds": 8, "steps": 8})  # offset 0
        fast = [await submit(client, "sleep", {"seconds": 0.2, "steps": 1}) for _ in range(5)]

        # The fast ones finish while the slow one, before them on the same partition, runs:
        # the worker runs many tasks at once...
        for task in fast:
            await wait_status(client, task["id"], "COMPLETE", within=30)
        assert (await record_of(client, slow["id"]))["status"] == "PROGRESS"
        # ...but the committed offset cannot pass the unfinished slow task.
        await asyncio.sleep(1.5)  # three commit intervals: a wrong commit would have happened
        assert await committed_offset(settings, topic) in (None, 0)

        await wait_status(client, slow["id"], "COMPLETE", within=30)
        await eventually(lambda: committed_offset(settings, topic), lambda c: c == 6, within=20)


async def test_a_duplicated_message_runs_the_task_once(
    start_apps: StartApps, namespace: str, settings: Settings, store: TaskStore
) -> None:
    apps = start_apps(namespace, env=ONE_PARTITION)
    async with apps.client() as client:
        accepted = await submit(client, "sleep", {"seconds": 1, "steps": 2})
        copy = json.dumps(
            {"id": accepted["id"], "task": "sleep", "payload": accepted["payload"]}
        ).encode()
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            topic = settings.task_topic("sleep")
            await producer.send_and_wait(topic, copy, key=accepted["id"].encode())  # while running
            await wait_status(client, accepted["id"], "COMPLETE")
            await producer.send_and_wait(topic, copy, key=accepted["id"].encode())  # after
        finally:
            await producer.stop()
        await eventually(
            lambda: committed_offset(settings, settings.task_topic("sleep")),
            lambda offset: offset is not None and offset >= 3,
            within=30,
        )

    # Every attempt that starts raises `attempts` (in the same atomic write), so 1 means the
    # task ran once although its message was delivered three times.
    final = await store.get(uuid.UUID(accepted["id"]))
    assert final.attempts == 1
    assert final.status == "COMPLETE"


FAST_FAILOVER = {"KT_WORKER_SESSION_TIMEOUT_SECONDS": "6"}


async def test_sigkilled_workers_lose_no_task_and_never_rerun_a_finished_one(
    start_apps: StartApps, namespace: str, store: TaskStore, redis_client: RedisClient
) -> None:
    apps = start_apps(namespace, env=FAST_FAILOVER)
    async with apps.client() as client:
        accepted = [await submit(client, "sleep", {"seconds": 4, "steps": 8}) for _ in range(6)]
        ids = [task["id"] for task in accepted]

        for round_number in (1, 2):
            await kill_a_worker_mid_task(apps, client, ids, round_number)

        finals = [await wait_status(client, i, "COMPLETE", within=90) for i in ids]

    assert [r["status"] for r in finals] == ["COMPLETE"] * 6
    assert max(r["attempts"] for r in finals) >= 2, "a killed attempt must show a second run"
    # Nothing wrote to a task after it completed: COMPLETE is the last event of each history.
    for task_id in ids:
        history = await redis_client.xrange(store.keys.events(task_id))
        statuses = [fields[b"status"].decode() for _, fields in history]
        assert statuses[-1] == "COMPLETE"
        assert statuses.count("COMPLETE") == 1


async def test_sigterm_lets_running_tasks_finish_commits_and_exits_zero(
    start_apps: StartApps, namespace: str, settings: Settings
) -> None:
    apps = start_apps(namespace)
    worker = apps.workers[0]
    async with apps.client() as client:
        accepted = [await submit(client, "sleep", {"seconds": 3, "steps": 3}) for _ in range(3)]
        for task in accepted:
            await wait_status(client, task["id"], "PROGRESS")

        stack.signal_app(worker, "TERM")
        assert processes.wait_for(lambda: not processes.alive(worker.pid), timeout=30)
        assert processes.exit_code(worker.pid) == 0

        finals = [await record_of(client, t["id"]) for t in accepted]
        assert [(r["status"], r["attempts"]) for r in finals] == [("COMPLETE", 1)] * 3
    # Their offsets were committed on the way out: nothing is left for the next worker.
    rows = await group_lag(
        settings.kafka_bootstrap_servers, settings.consumer_group, [settings.task_topic("sleep")]
    )
    assert sum(row.lag for row in rows) == 0


async def kill_a_worker_mid_task(
    apps: AppStack, client: httpx.AsyncClient, ids: list[str], round_number: int
) -> None:
    """SIGKILL the newest worker while tasks run on it, start another, and wait until every
    interrupted task has started again (or finished)."""
    victim = apps.workers[-1]
    running = await eventually(
        lambda: asyncio.gather(*(record_of(client, i) for i in ids)),
        lambda records: any(
            r["status"] == "PROGRESS" and r["attempts"] == round_number for r in records
        ),
        within=60,
    )
    interrupted = [r["id"] for r in running if r["status"] == "PROGRESS"]
    processes.kill(victim.pid)
    assert not processes.alive(victim.pid)
    apps.add_worker()
    for task_id in interrupted:
        await eventually(
            lambda task_id=task_id: record_of(client, task_id),
            lambda r: r["attempts"] > round_number or r["status"] == "COMPLETE",
            within=60,
        )
