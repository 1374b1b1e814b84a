"""The Redis Cluster changing under running tasks: slots moved between masters (MOVED, ASK,
TRYAGAIN while their keys migrate) and a master killed and replaced by its replica. No task
that was accepted is lost: each ends COMPLETE, once."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from redis.crc import key_slot

from devstack import processes, stack
from devstack import redis as devstack_redis
from services.client import AsyncClient
from services.core.keys import SHARD_TAGS, SHARDS, RedisKeys, shard_of_idempotency_key
from services.core.models import TaskRecord
from services.core.redis_client import RedisClient
from services.core.states import TaskState
from tests.conftest import AppStack, StartApps

pytestmark = pytest.mark.cluster_redis

MOVED_SLOTS = 2000
"""The first slots of the master that serves slot 0: shards 0, 1 and 2 live there."""

FILLER_KEYS = 1500
"""Keys added to each moving shard, moved one per MIGRATE: each slot takes a while to move,
and the tasks' writes to it meet the migration (ASK, TRYAGAIN) rather than miss it."""

SLEEP = {"seconds": 2, "steps": 8}


def keys_in_shards(prefix: str, shards: set[int], count: int) -> list[str]:
    """Idempotency-Keys whose tasks land in ``shards`` (a key decides its task's shard)."""
    keys = (f"{prefix}-{i}" for i in itertools.count())
    return list(itertools.islice((k for k in keys if shard_of_idempotency_key(k) in shards), count))


def owner(state: stack.StackState, slot: int) -> devstack_redis.ClusterMember:
    members = devstack_redis.cluster_members(state.redis_cluster)
    return next(m for m in members if m.is_master and m.serves(slot))


async def history_statuses(apps: AppStack, task_id: str) -> list[str]:
    async with apps.client() as http:
        response = await http.get(f"/tasks/{task_id}/history")
    assert response.status_code == 200, response.text
    return [entry["status"] for entry in response.json()]


async def submit_all(tasks: AsyncClient, keys: list[str], payload: dict[str, Any]) -> list[str]:
    """Submit one sleep task per key; 503s (a slot moving, a master failing over) are retried
    with the same key, as the client does."""
    submitted = [await tasks.submit("sleep", payload, idempotency_key=key) for key in keys]
    return [str(record.id) for record in submitted]


async def all_finish(tasks: AsyncClient, ids: list[str]) -> list[TaskRecord]:
    return [await tasks.wait(task_id, timeout=180) for task_id in ids]


async def test_moving_slots_between_masters_while_tasks_run_loses_no_task(
    start_apps: StartApps,
    namespace: str,
    redis_cluster: stack.StackState,
    redis_client: RedisClient,
) -> None:
    apps = start_apps(namespace, workers=2)
    assert apps.api is not None
    moved = {s for s in range(SHARDS) if key_slot(SHARD_TAGS[s].encode()) < MOVED_SLOTS}
    keyspace = RedisKeys(namespace)
    async with redis_client.pipeline(transaction=False) as pipe:
        for shard in moved:
            for i in range(FILLER_KEYS):
                pipe.set(f"{keyspace.shard(shard)}filler:{i}", "x", ex=600)
        await pipe.execute()
    keys = keys_in_shards(namespace, moved, 60)
    source = owner(redis_cluster, 0)
    target = next(
        m
        for m in devstack_redis.cluster_members(redis_cluster.redis_cluster)
        if m.is_master and m.node_id != source.node_id
    )
    errors_before = devstack_redis.reply_errors(redis_cluster.redis_cluster)
    async with AsyncClient(apps.api.url, retries=30) as tasks:
        before = await submit_all(tasks, keys[:30], SLEEP)
        moving = asyncio.create_task(
            asyncio.to_thread(
                devstack_redis.reshard,
                redis_cluster.redis_cluster,
                source=source.node_id,
                target=target.node_id,
                slots=MOVED_SLOTS,
                keys_per_batch=1,
            )
        )
        during = await submit_all(tasks, keys[30:], SLEEP)
        await moving
        moved_to = owner(redis_cluster, key_slot(SHARD_TAGS[0].encode()))
        finals = await all_finish(tasks, before + during)
        errors = devstack_redis.reply_errors(redis_cluster.redis_cluster)
        # And back, so that the cluster is as the other tests expect it.
        await asyncio.to_thread(
            devstack_redis.reshard,
            redis_cluster.redis_cluster,
            source=target.node_id,
            target=source.node_id,
            slots=MOVED_SLOTS,
        )

    assert moved_to.node_id == target.node_id, "the shards' slots must have moved"
    redirected = {
        code: errors.get(code, 0) - errors_before.get(code, 0)
        for code in ("MOVED", "ASK", "TRYAGAIN")
    }
    print("redirections while the slots moved:", redirected)
    assert redirected["MOVED"] > 0, "the clients must have followed the slots"
    assert redirected["ASK"] + redirected["TRYAGAIN"] > 0, "writes must have met the migration"
    assert [f.status for f in finals] == [TaskState.COMPLETE] * 60
    for task_id in before + during:
        assert (await history_statuses(apps, task_id)).count("COMPLETE") == 1


async def test_a_master_failing_over_to_its_replica_while_tasks_run_loses_no_task(
    start_apps: StartApps, namespace: str, redis_cluster: stack.StackState
) -> None:
    apps = start_apps(
        namespace,
        workers=2,
        env={"KT_WORKER_LEASE_SECONDS": "5", "KT_WORKER_SWEEP_INTERVAL_SECONDS": "1"},
    )
    assert apps.api is not None
    entry = redis_cluster.redis_cluster[0]  # where clients start: it must stay up
    members = devstack_redis.cluster_members(redis_cluster.redis_cluster)
    victim = next(m for m in members if m.is_master and m.server.port != entry.port)
    victim_keys = {s for s in range(SHARDS) if victim.serves(key_slot(SHARD_TAGS[s].encode()))}
    async with AsyncClient(apps.api.url, retries=40) as tasks:
        # Half of them on the master that fails, all of them running or queued when it does.
        keys = keys_in_shards(f"{namespace}-v", victim_keys, 20)
        keys += keys_in_shards(f"{namespace}-o", set(range(SHARDS)) - victim_keys, 20)
        before = await submit_all(tasks, keys, SLEEP)
        await asyncio.to_thread(processes.kill, victim.server.pid)
        try:
            during = await submit_all(
                tasks, keys_in_shards(f"{namespace}-d", victim_keys, 10), SLEEP
            )
            replaced = await asyncio.to_thread(
                processes.wait_for,
                lambda: owner(redis_cluster, victim.slots[0][0]).node_id != victim.node_id,
                timeout=60,
            )
        finally:
            await asyncio.to_thread(stack.restart_cluster_node, redis_cluster, victim.server)
        await asyncio.to_thread(devstack_redis.wait_cluster_ready, redis_cluster.redis_cluster)
        finals = await all_finish(tasks, before + during)

    assert replaced, "the replica must have taken over the killed master's slots"
    assert [f.status for f in finals] == [TaskState.COMPLETE] * 50
    for task_id in before + during:
        assert (await history_statuses(apps, task_id)).count("COMPLETE") == 1
