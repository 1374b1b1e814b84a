"""The key layout: one task's keys and its shard's structures share a slot; shards spread
evenly over a cluster's masters; an Idempotency-Key decides its task's shard."""

from __future__ import annotations

import uuid
from collections import Counter

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from services.core import state_scripts
from services.core.keys import (
    SHARD_TAGS,
    SHARDS,
    RedisKeys,
    new_task_id,
    shard_of,
    shard_of_idempotency_key,
)
from services.core.states import TaskState
from services.core.workflows import member_id


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_each_shard_hashes_to_the_middle_of_its_share_of_the_slots() -> None:
    width = REDIS_CLUSTER_HASH_SLOTS / SHARDS
    assert len(SHARD_TAGS) == SHARDS
    for shard, tag in enumerate(SHARD_TAGS):
        assert shard * width + width / 4 <= slot(tag) < shard * width + 3 * width / 4, tag


def test_an_evenly_split_cluster_gives_each_master_the_same_number_of_shards() -> None:
    # redis-cli --cluster create (and the managed services) split the slots in equal ranges.
    for masters in (1, 2, 3, 4, 6, 8, 12, 24):
        per_master = Counter(
            int(slot(tag) * masters / REDIS_CLUSTER_HASH_SLOTS) for tag in SHARD_TAGS
        )
        assert set(per_master.values()) == {SHARDS // masters}, masters


def test_a_tasks_keys_and_its_shards_structures_share_one_slot() -> None:
    keys = RedisKeys("kt")
    task_id = new_task_id()
    shard = shard_of(task_id)
    names = [
        keys.record(task_id),
        keys.events(task_id),
        keys.withdrawn(task_id),
        keys.deadlines(shard),
        keys.index(shard),
        keys.index(shard, task="noop"),
        keys.index(shard, state="PENDING"),
        keys.index(shard, task="noop", state="COMPLETE"),
        keys.finished(shard, 29_000_000),
    ]
    assert {slot(name) for name in names} == {slot(SHARD_TAGS[shard])}


def test_an_idempotency_key_puts_its_task_in_its_own_shard() -> None:
    keys = RedisKeys("kt")
    for key in ("order-42", "redrive-x", "a{b}c", "ü"):
        task_id = new_task_id(key)
        assert shard_of(task_id) == shard_of_idempotency_key(key)
        assert slot(keys.idempotency(key)) == slot(keys.record(task_id))
        assert task_id.version == 4


def test_ids_without_a_key_spread_over_every_shard() -> None:
    seen = Counter(shard_of(new_task_id()) for _ in range(4800))
    assert set(seen) == set(range(SHARDS))
    assert min(seen.values()) > 100  # ~200 each


def test_any_uuid_has_a_shard_and_the_same_one_as_text() -> None:
    task_id = uuid.uuid4()
    assert 0 <= shard_of(task_id) < SHARDS
    assert shard_of(str(task_id)) == shard_of(task_id)


def test_every_script_call_is_single_slot() -> None:
    # What the store passes as KEYS, for each layout: one slot, whatever the task and state.
    keys = RedisKeys("kt")
    for layout in (
        state_scripts.CREATE_KEYS,
        state_scripts.RESTORE_KEYS,
        state_scripts.UPDATE_KEYS,
        state_scripts.WITHDRAW_KEYS,
        state_scripts.SETTLE_KEYS,
        state_scripts.READ_KEYS,
        state_scripts.HOLD_KEYS,
        state_scripts.RELEASE_KEYS,
        state_scripts.WAKE_KEYS,
    ):
        for target in TaskState:
            key = "order-7"
            # A workflow member (its id derived from its workflow's, in the key's shard): a
            # terminal write declares the workflow's keys too, in the same slot.
            workflow_id = new_task_id(key)
            names = layout.resolve(
                keys,
                member_id(workflow_id, 3),
                task="sleep",
                target=target,
                minute=30_000_000,
                idempotency_key=key,
                workflow_id=workflow_id,
            )
            assert len(names) == len(layout.roles)
            assert len({slot(name) for name in names}) == 1, (layout, names)


def test_a_workflow_and_its_members_share_one_slot() -> None:
    keys = RedisKeys("kt")
    for _ in range(200):
        workflow_id = new_task_id()
        names = [keys.workflow(workflow_id), keys.workflow_events(workflow_id)]
        names += [keys.record(member_id(workflow_id, step)) for step in range(20)]
        assert len({slot(name) for name in names}) == 1
    # The keys that two-key scripts touch together share a hash tag.
    assert slot(keys.concurrency_slots("sync", '"a}b"')) == slot(
        keys.concurrency_waiters("sync", '"a}b"')
    )
    assert slot(keys.scheduler_leader) == slot(keys.schedule("nightly"))


def test_records_can_be_found_by_scanning_and_told_apart_from_other_keys() -> None:
    keys = RedisKeys("kt")
    task_id = new_task_id("k")
    assert keys.after_kind(keys.record(task_id), "task") == str(task_id)
    assert keys.after_kind(keys.idempotency("a:b}c"), "idempotency") == "a:b}c"
    assert keys.record_pattern == "kt:{*}:task:*"
