"""Priorities: the weighted slots alone, and a high-priority task overtaking a backlog of
5,000 low-priority ones on the real stack (ordering measured, not timing)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from services.core.kafka_topics import ensure_topics
from services.core.models import TaskMessage
from services.core.priorities import DEFAULT_WEIGHTS, Priority
from services.core.settings import Settings
from services.core.states import TaskState
from services.core.store import TaskStore
from services.tasks import catalog
from services.worker.slots import WeightedSlots
from tests.conftest import StartApps
from tests.helpers import eventually

BACKLOG = 5000


async def test_freed_slots_go_to_the_waiting_priorities_by_weight() -> None:
    # One slot; an agent per priority always has its next message waiting (as a faust agent
    # does); each task started gives its slot back a moment later.
    slots = WeightedSlots(1, DEFAULT_WEIGHTS)
    await slots.acquire(Priority.LOW)
    served: list[Priority] = []
    loop = asyncio.get_running_loop()

    async def agent(priority: Priority) -> None:
        while len(served) < 100:
            await slots.acquire(priority)
            served.append(priority)
            loop.call_soon(slots.release)

    agents = [asyncio.create_task(agent(p)) for p in Priority]
    await asyncio.sleep(0)
    slots.release()
    await asyncio.wait(agents, timeout=5)
    for task in agents:
        task.cancel()
    first = served[:100]
    counts = (first.count(Priority.HIGH), first.count(Priority.DEFAULT), first.count(Priority.LOW))
    assert counts == (60, 30, 10)


async def test_a_free_slot_is_taken_at_once_whatever_the_priority() -> None:
    slots = WeightedSlots(2, DEFAULT_WEIGHTS)
    await asyncio.wait_for(slots.acquire(Priority.LOW), timeout=1)
    await asyncio.wait_for(slots.acquire(Priority.LOW), timeout=1)
    waiter = asyncio.create_task(slots.acquire(Priority.HIGH))
    await asyncio.sleep(0)
    assert not waiter.done()
    assert slots.waiting(Priority.HIGH) == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert slots.waiting(Priority.HIGH) == 0
    slots.release()
    assert slots.free == 1


async def test_a_high_priority_task_overtakes_a_backlog_of_5000_low_priority_ones(
    start_apps: StartApps, namespace: str, settings: Settings, redis_client: Redis
) -> None:
    store = TaskStore(redis_client, namespace=namespace, result_ttl_seconds=600)
    await ensure_topics(settings, catalog)
    backlog = [
        TaskMessage(id=uuid.uuid4(), task="noop", payload={}, priority=Priority.LOW)
        for _ in range(BACKLOG)
    ]
    urgent = TaskMessage(
        id=uuid.uuid4(), task="noop", payload={"echo": "urgent"}, priority=Priority.HIGH
    )
    for chunk in range(0, BACKLOG, 50):
        await asyncio.gather(
            *(
                store.create(m.id, m.task, m.payload, priority=m.priority)
                for m in backlog[chunk : chunk + 50]
            )
        )
    await store.create(urgent.id, urgent.task, urgent.payload, priority=Priority.HIGH)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=50)
    await producer.start()
    try:
        low_topic = settings.task_topic("noop", Priority.LOW)
        for message in backlog:
            await producer.send(
                low_topic, message.model_dump_json().encode(), key=str(message.id).encode()
            )
        await producer.flush()
        # The urgent task is published after the whole backlog.
        await producer.send_and_wait(
            settings.task_topic("noop", Priority.HIGH),
            urgent.model_dump_json().encode(),
            key=str(urgent.id).encode(),
        )
    finally:
        await producer.stop()

    start_apps(namespace, workers=1, api=False)
    done = await eventually(
        lambda: store.get(urgent.id), lambda r: r.status is TaskState.COMPLETE, within=120
    )
    assert done.result == "urgent"
    urgent_start = (await store.history(urgent.id))[1].updated_at

    async def low_starts() -> list[datetime]:
        async with redis_client.pipeline(transaction=False) as pipe:
            for message in backlog:
                pipe.xrange(store.keys.events(message.id), count=2)
            entries = await pipe.execute()
        # A create appends no event (the record is its first version): the first event of
        # a task that started is its PROGRESS.
        return [
            _at(entry[0][1]) for entry in entries if entry and entry[0][1][b"status"] == b"PROGRESS"
        ]

    # Compare once a good part of the backlog ran, so the order says something.
    started = await eventually(low_starts, lambda s: len(s) >= BACKLOG // 5, within=120)
    before = sum(1 for at in started if at < urgent_start)
    print(
        f"the high-priority task started after {before} of the {len(started)} low-priority "
        f"tasks started so far (backlog {BACKLOG})"
    )
    assert before < BACKLOG // 10, f"{before} low-priority tasks started before the high one"


def _at(fields: dict[bytes, bytes]) -> datetime:
    return datetime.fromisoformat(json.loads(fields[b"updated_at"]))
