"""What the checker reads once the run settled: every record of the run's namespace and its
event history, the idempotency keys, the dead-letter topic, the listing indexes and the
dashboard's summary, straight from Redis, Kafka and an API process."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from services.core import topics
from services.core.keys import SHARDS, RedisKeys
from services.core.lag import OffsetReader
from services.core.models import DeadLetter, TaskRecord
from services.core.state_codec import history_from, record_from_fields, text
from services.core.states import TaskState

BATCH = 500
LIVE_STATES = (TaskState.PENDING, TaskState.PROGRESS, TaskState.RETRY)


@dataclass
class Snapshot:
    records: dict[str, TaskRecord]
    histories: dict[str, list[TaskRecord]]
    keys_by_task: dict[str, str]
    """Task id -> the Idempotency-Key that created it."""
    dead_letters: list[DeadLetter]
    index_counts: dict[str, int]
    """State -> ids in its listing index."""
    summary: dict[str, dict[str, int]]
    """``/dashboard/summary``'s counts: task -> state -> count."""


async def settle(redis_url: str, namespace: str, *, within: float) -> bool:
    """Wait until no task of the run is live (by the indexes) and nothing is left for the
    reaper; False if ``within`` passed."""
    keys = RedisKeys(namespace)
    redis = Redis.from_url(redis_url, socket_timeout=5)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            live = [await _index_count(redis, keys, s) for s in LIVE_STATES]
            # ... and every deadline met (a FAILURE's dead letter written, say).
            if not any(live) and not await _deadline_count(redis, keys):
                return True
            await asyncio.sleep(1)
        return False
    finally:
        await redis.aclose()


async def take(redis_url: str, bootstrap_servers: str, namespace: str, api_url: str) -> Snapshot:
    keys = RedisKeys(namespace)
    redis = Redis.from_url(redis_url, socket_timeout=30)
    try:
        found = [text(key) async for key in redis.scan_iter(match=keys.record_pattern, count=1000)]
        ids = sorted(keys.after_kind(key, "task") for key in found)
        records: dict[str, TaskRecord] = {}
        histories: dict[str, list[TaskRecord]] = {}
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            async with redis.pipeline(transaction=False) as pipe:
                for task_id in chunk:
                    pipe.hgetall(keys.record(task_id))
                    pipe.xrange(keys.events(task_id))
                answers = await pipe.execute()
            for task_id, fields, entries in zip(chunk, answers[::2], answers[1::2], strict=True):
                if fields:
                    records[task_id] = record_from_fields(fields)
                    histories[task_id] = history_from(fields, entries)
        keys_by_task = {}
        async for key in redis.scan_iter(match=keys.idempotency_pattern, count=1000):
            value = await redis.get(key)
            if value:
                keys_by_task[text(value).split(" ")[0]] = keys.after_kind(text(key), "idempotency")
        index_counts = {s.value: await _index_count(redis, keys, s) for s in TaskState}
    finally:
        await redis.aclose()
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        response = await client.get("/dashboard/summary")
        response.raise_for_status()
        summary = response.json()["counts"]
    letters = await _dead_letters(bootstrap_servers, topics.dead_letter_topic(namespace))
    return Snapshot(records, histories, keys_by_task, letters, index_counts, summary)


async def _deadline_count(redis: Redis, keys: RedisKeys) -> int:
    """Ids in the deadlines of every shard."""
    async with redis.pipeline(transaction=False) as pipe:
        for shard in range(SHARDS):
            pipe.zcard(keys.deadlines(shard))
        counts = await pipe.execute()
    return sum(int(count) for count in counts)


async def _index_count(redis: Redis, keys: RedisKeys, state: TaskState) -> int:
    """Ids in the listing index of ``state``, over every shard."""
    async with redis.pipeline(transaction=False) as pipe:
        for shard in range(SHARDS):
            pipe.zcard(keys.index(shard, state=state.value))
        return sum(await pipe.execute())


async def _dead_letters(bootstrap_servers: str, topic: str) -> list[DeadLetter]:
    """Every message of the dead-letter topic, read from its start to its current end."""
    async with OffsetReader(bootstrap_servers) as reader:
        partitions = await reader.partitions([topic])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                letters += [DeadLetter.model_validate_json(r.value) for r in batch.get(tp, [])]
    finally:
        await consumer.stop()
    return letters
