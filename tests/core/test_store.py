"""The Redis state store against the real Redis started by the suite."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import RedisCluster

from services.core.errors import (
    AlreadyRunningError,
    BackendUnavailableError,
    IdempotencyConflictError,
    IdempotencyKeyInUseError,
    InvalidTransitionError,
    StaleAttemptError,
    TaskNotFoundError,
)
from services.core.keys import new_task_id, shard_of
from services.core.models import Progress, TaskError, TaskMessage
from services.core.redis_client import RedisClient
from services.core.settings import Settings
from services.core.states import TaskState
from services.core.store import EVENTS_MAX_LEN, Reclaimed, TaskStore
from services.core.workflows import (
    Signature,
    WorkflowKind,
    WorkflowLink,
    WorkflowSpec,
    member_id,
)
from tests.helpers import eventually


async def test_create_then_transitions_raise_the_version(store: TaskStore) -> None:
    task_id = uuid.uuid4()
    created, was_new = await store.create(task_id, "noop", {"echo": "x"})
    assert was_new
    assert (created.status, created.version, created.attempts) == (TaskState.PENDING, 1, 0)

    started = await store.transition(
        task_id, TaskState.PROGRESS, progress=Progress(percent=0), start_delivery="t/0/1"
    )
    done = await store.transition(task_id, TaskState.COMPLETE, result=[1, {"a": []}])

    assert (started.version, started.attempts) == (2, 1)
    assert done.version == 3
    assert done.result == [1, {"a": []}]
    assert await store.get(task_id) == done


async def test_terminal_task_refuses_every_write(store: TaskStore) -> None:
    task_id = uuid.uuid4()
    await store.create(task_id, "fail", {})
    await store.transition(
        task_id, TaskState.FAILURE, error=TaskError(type="ValueError", message="x")
    )
    for target in TaskState:
        with pytest.raises(InvalidTransitionError):
            await store.transition(task_id, target)
    assert (await store.get(task_id)).version == 2


async def test_creating_twice_is_refused(store: TaskStore) -> None:
    task_id = uuid.uuid4()
    await store.create(task_id, "noop", {})
    with pytest.raises(InvalidTransitionError):
        await store.create(task_id, "noop", {})


async def test_missing_task_is_not_found(store: TaskStore) -> None:
    with pytest.raises(TaskNotFoundError):
        await store.get(uuid.uuid4())
    with pytest.raises(TaskNotFoundError):
        await store.transition(uuid.uuid4(), TaskState.PROGRESS)


async def test_live_records_never_expire_and_terminal_ones_do(
    store: TaskStore, redis_client: RedisClient
) -> None:
    task_id = uuid.uuid4()
    await store.create(task_id, "noop", {})
    assert await redis_client.ttl(store.keys.record(task_id)) == -1
    # The create is the record's version 1: a queued task has no events stream yet.
    assert not await redis_client.exists(store.keys.events(task_id))
    await store.transition(task_id, TaskState.COMPLETE, result=None)
    ttl = await redis_client.ttl(store.keys.record(task_id))
    assert 0 < ttl <= 60
    assert 0 < await redis_client.ttl(store.keys.events(task_id)) <= 60


async def test_follow_yields_current_state_then_every_write_until_terminal(
    store: TaskStore,
) -> None:
    task_id = uuid.uuid4()
    await store.create(task_id, "sleep", {})
    await store.transition(
        task_id, TaskState.PROGRESS, progress=Progress(percent=10), start_delivery="t/0/0"
    )
    seen: list[tuple[TaskState, int]] = []
    first_read = asyncio.Event()

    async def follow() -> None:
        async for record in store.follow(task_id, block_ms=200):
            if record is not None:
                seen.append((record.status, record.version))
                first_read.set()

    follower = asyncio.create_task(follow())
    await asyncio.wait_for(first_read.wait(), timeout=10)
    await store.transition(task_id, TaskState.PROGRESS, progress=Progress(percent=50))
    await store.transition(task_id, TaskState.COMPLETE, result=1)
    await asyncio.wait_for(follower, timeout=10)

    assert seen == [
        (TaskState.PROGRESS, 2),
        (TaskState.PROGRESS, 3),
        (TaskState.COMPLETE, 4),
    ]


async def test_concurrent_writers_never_reopen_a_finished_task(store: TaskStore) -> None:
    task_id = uuid.uuid4()
    await store.create(task_id, "noop", {})

    async def write(state: TaskState) -> str:
        try:
            await store.transition(task_id, state)
            return "ok"
        except InvalidTransitionError:
            return "refused"

    outcomes = await asyncio.gather(
        *(write(TaskState.PROGRESS) for _ in range(20)),
        write(TaskState.COMPLETE),
        *(write(TaskState.PROGRESS) for _ in range(20)),
    )
    final = await store.get(task_id)
    assert final.status is TaskState.COMPLETE
    # Every write that was accepted raised the version by exactly one.
    assert final.version == 1 + outcomes.count("ok")


async def test_idempotency_key_returns_the_first_task_or_conflicts(store: TaskStore) -> None:
    first, created = await store.create(
        new_task_id("k1"), "noop", {"echo": "a"}, idempotency_key="k1"
    )
    # While the first request has not confirmed its publication, it may still take it back.
    with pytest.raises(IdempotencyKeyInUseError):
        await store.create(new_task_id("k1"), "noop", {"echo": "a"}, idempotency_key="k1")
    await store.confirm_published(first.id, position="t/0/0")
    again, created_again = await store.create(
        new_task_id("k1"), "noop", {"echo": "a"}, idempotency_key="k1"
    )
    assert created
    assert not created_again
    assert again.id == first.id

    with pytest.raises(IdempotencyConflictError) as conflict:
        await store.create(new_task_id("k1"), "noop", {"echo": "b"}, idempotency_key="k1")
    assert conflict.value.task_id == str(first.id)


async def test_an_id_outside_its_idempotency_keys_shard_is_a_bug(store: TaskStore) -> None:
    # The key and the record must share a slot for the create to be one atomic script.
    other = next(i for i in iter(uuid.uuid4, None) if shard_of(i) != shard_of(new_task_id("k2")))
    with pytest.raises(ValueError, match="shard of its Idempotency-Key"):
        await store.create(other, "noop", {}, idempotency_key="k2")


async def test_publication_deadlines_hold_until_the_message_is_confirmed_or_started(
    redis_client: RedisClient, settings: Settings
) -> None:
    store = TaskStore(
        redis_client,
        namespace=settings.namespace,
        result_ttl_seconds=60,
        publish_deadline_seconds=0,
    )
    confirmed, lost, started = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for task_id in (confirmed, lost, started):
        await store.create(task_id, "noop", {})
    await store.confirm_published(confirmed, position="t/0/1")
    await store.transition(started, TaskState.PROGRESS, start_delivery="t/0/2")

    # The started one now has its lease as its deadline, half a minute away.
    assert await store.overdue() == [lost]


async def test_a_second_copy_of_a_message_cannot_start_a_running_task(store: TaskStore) -> None:
    task_id = uuid.uuid4()
    await store.create(task_id, "sleep", {})
    await store.transition(task_id, TaskState.PROGRESS, start_delivery="t/0/5")

    with pytest.raises(AlreadyRunningError):
        await store.transition(task_id, TaskState.PROGRESS, start_delivery="t/0/9")
    # The same delivery again (the worker died and Kafka redelivered it) restarts the task.
    restarted = await store.transition(task_id, TaskState.PROGRESS, start_delivery="t/0/5")
    assert restarted.attempts == 2


async def test_listing_filters_by_state_and_name_newest_first_with_a_cursor(
    store: TaskStore,
) -> None:
    ids = []
    for index in range(7):
        task_id = uuid.uuid4()
        await store.create(task_id, "noop" if index % 2 else "sleep", {"i": index})
        ids.append(task_id)
    for task_id in ids[:3]:
        await store.transition(task_id, TaskState.PROGRESS, start_delivery=f"t/0/{task_id}")
    await store.transition(ids[0], TaskState.COMPLETE, result=None)

    first, cursor = await store.list_tasks(limit=4)
    rest, end = await store.list_tasks(limit=4, cursor=cursor)
    assert [r.id for r in first + rest] == ids[::-1]
    assert end is None

    progress, _ = await store.list_tasks(state=TaskState.PROGRESS)
    assert [r.id for r in progress] == [ids[2], ids[1]]
    noop_pending, _ = await store.list_tasks(state=TaskState.PENDING, task="noop")
    assert [r.id for r in noop_pending] == [ids[5], ids[3]]
    done, _ = await store.list_tasks(state=TaskState.COMPLETE, task="sleep")
    assert [r.id for r in done] == [ids[0]]

    counts = await store.counts(["noop", "sleep"])
    assert counts["sleep"] == {
        "PENDING": 2,
        "PROGRESS": 1,
        "RETRY": 0,
        "COMPLETE": 1,
        "FAILURE": 0,
        "CANCELLED": 0,
        "EXPIRED": 0,
    }
    assert counts["noop"]["PENDING"] == 2
    assert counts["noop"]["PROGRESS"] == 1
    rates = await store.finished_per_second(60)
    assert sum(rates["COMPLETE"]) == 1
    assert len(rates["FAILURE"]) == 60


async def test_expired_tasks_leave_the_indexes(
    redis_client: RedisClient, settings: Settings
) -> None:
    store = TaskStore(redis_client, namespace=settings.namespace, result_ttl_seconds=1)
    task_id = uuid.uuid4()
    await store.create(task_id, "noop", {})
    await store.transition(task_id, TaskState.COMPLETE, result=None)
    # Expire the record as Redis would at its TTL, and let the cutoff pass.
    await redis_client.delete(store.keys.record(task_id))
    await eventually(lambda: store.trim_expired(["noop"]), lambda n: n == 1, within=5)

    assert await store.list_tasks() == ([], None)
    assert (await store.counts(["noop"]))["noop"]["COMPLETE"] == 0


async def test_writes_of_an_attempt_that_is_over_are_refused(store: TaskStore) -> None:
    task_id = uuid.uuid4()
    await store.create(task_id, "flaky", {})
    first = await store.transition(task_id, TaskState.PROGRESS, start_delivery="t/0/1")
    failed = TaskError(type="TimeoutError", message="over its time limit")
    await store.transition(task_id, TaskState.RETRY, error=failed, attempt=first.attempts)

    # The first attempt's thread reports on: its task waits for a retry, not for it.
    with pytest.raises(InvalidTransitionError) as refused:
        await store.transition(
            task_id, TaskState.PROGRESS, progress=Progress(percent=90), attempt=first.attempts
        )
    assert refused.value.current == "RETRY"
    second = await store.transition(task_id, TaskState.PROGRESS, start_delivery="t/0/2")
    with pytest.raises(StaleAttemptError):
        await store.transition(task_id, TaskState.COMPLETE, attempt=first.attempts)
    done = await store.transition(
        task_id, TaskState.COMPLETE, result="second", attempt=second.attempts
    )
    assert (done.result, done.error, done.attempts) == ("second", None, 2)


async def test_a_withdrawn_submission_leaves_nothing_and_cannot_come_back(
    store: TaskStore, redis_client: RedisClient
) -> None:
    task_id = new_task_id("withdrawn-1")
    await store.create(task_id, "noop", {"echo": "x"}, idempotency_key="withdrawn-1")
    assert await store.withdraw(task_id, task="noop", idempotency_key="withdrawn-1")

    with pytest.raises(TaskNotFoundError):
        await store.get(task_id)
    assert await store.list_tasks() == ([], None)
    assert (await store.counts(["noop"]))["noop"]["PENDING"] == 0
    assert await store.overdue() == []
    assert not await redis_client.exists(store.keys.idempotency("withdrawn-1"))
    # A copy of its message that landed after all is not turned into a task.
    late = TaskMessage(id=task_id, task="noop", payload={"echo": "x"})
    assert await store.restore(late) is None
    # Neither is the create itself, should Redis run it late.
    with pytest.raises(BackendUnavailableError):
        await store.create(task_id, "noop", {})


async def test_a_started_task_is_not_withdrawn(store: TaskStore) -> None:
    task_id = uuid.uuid4()
    await store.create(task_id, "noop", {})
    await store.transition(task_id, TaskState.PROGRESS, start_delivery="t/0/3")
    assert not await store.withdraw(task_id, task="noop")
    assert (await store.get(task_id)).status is TaskState.PROGRESS


async def test_a_lost_record_is_restored_from_its_message(store: TaskStore) -> None:
    message = TaskMessage(id=uuid.uuid4(), task="noop", payload={"echo": "again"})
    restored = await store.restore(message)
    assert restored is not None
    assert (restored.status, restored.payload, restored.created_at) == (
        TaskState.PENDING,
        {"echo": "again"},
        message.submitted_at,
    )
    again = await store.restore(message)
    assert again == restored
    listed, _ = await store.list_tasks(state=TaskState.PENDING)
    assert [r.id for r in listed] == [message.id]


async def test_an_abandoned_attempt_is_claimed_once_and_then_restarts(
    redis_client: RedisClient, settings: Settings
) -> None:
    store = TaskStore(
        redis_client, namespace=settings.namespace, result_ttl_seconds=60, lease_seconds=0.2
    )
    task_id = uuid.uuid4()
    await store.create(task_id, "noop", {"echo": "orphan"})
    await store.confirm_published(task_id, position="t/0/0")
    started = await store.transition(task_id, TaskState.PROGRESS, start_delivery="t/0/0")
    assert await store.reclaim(task_id) is None  # its lease is live

    await eventually(store.overdue, lambda due: due == [task_id], within=5)
    claims = await asyncio.gather(store.reclaim(task_id), store.reclaim(task_id))
    claimed = [claim for claim in claims if claim is not None]
    assert len(claimed) == 1
    assert claimed[0].reason is Reclaimed.LEASE_LAPSED
    assert claimed[0].message.payload == {"echo": "orphan"}
    # The lost worker's renewal finds its attempt no longer holds the task.
    assert await store.renew_leases({task_id: started.attempts}) == {task_id}
    # The re-published copy (another delivery) starts a new attempt.
    restarted = await store.transition(task_id, TaskState.PROGRESS, start_delivery="t/1/0")
    assert restarted.attempts == 2
    assert await store.renew_leases({task_id: restarted.attempts}) == set()


async def test_a_pending_task_is_claimed_only_at_the_position_its_message_had(
    store: TaskStore,
) -> None:
    task_id = uuid.uuid4()
    await store.create(task_id, "noop", {})
    await store.confirm_published(task_id, position="t/2/40")
    assert await store.reclaim(task_id, lost_position="t/2/39") is None
    claim = await store.reclaim(task_id, lost_position="t/2/40")
    assert claim is not None
    assert claim.reason is Reclaimed.MESSAGE_GONE
    positions = await store.pending_positions(older_than_seconds=0)
    assert positions == {task_id: "t/2/40"}


async def test_a_failure_keeps_a_deadline_until_its_dead_letter_is_written(
    redis_client: RedisClient, settings: Settings
) -> None:
    store = TaskStore(
        redis_client, namespace=settings.namespace, result_ttl_seconds=60, lease_seconds=0.2
    )
    task_id = uuid.uuid4()
    await store.create(task_id, "fail", {"message": "boom"})
    started = await store.transition(task_id, TaskState.PROGRESS, start_delivery="t/0/4")
    error = TaskError(type="DemoTaskError", message="boom")
    await store.transition(task_id, TaskState.FAILURE, error=error, attempt=started.attempts)

    # Its worker died before writing the dead letter: the reaper gets what it needs to.
    await eventually(store.overdue, lambda due: due == [task_id], within=5)
    claim = await store.reclaim(task_id)
    assert claim is not None
    assert claim.reason is Reclaimed.LETTER_UNSENT
    assert claim.letter is not None
    assert (claim.letter.error, claim.letter.attempts) == (error, 1)
    assert claim.letter.message.payload == {"message": "boom"}
    await store.confirm_lettered(task_id)
    assert await store.overdue() == []
    assert await store.reclaim(task_id) is None
    assert (await store.get(task_id)).status is TaskState.FAILURE


async def test_events_carry_what_changed_and_the_history_rebuilds_every_state(
    store: TaskStore, redis_client: RedisClient
) -> None:
    task_id = new_task_id()
    payload = {"blob": "x" * 20_000}
    await store.create(task_id, "noop", payload)
    await store.transition(task_id, TaskState.PROGRESS, task="noop", start_delivery="t/0/1")
    for percent in (25, 50, 75):
        await store.transition(
            task_id, TaskState.PROGRESS, progress=Progress(percent=percent), attempt=1
        )
    result = {"big": "y" * 20_000}
    await store.transition(task_id, TaskState.COMPLETE, result=result, attempt=1)

    # Neither the payload nor the result is copied into the events: the 5 writes after the
    # create (which is the record itself) stay small.
    entries = await redis_client.xrange(store.keys.events(task_id))
    assert len(entries) == 5
    assert all(b"payload" not in fields and b"result" not in fields for _, fields in entries)
    assert sum(len(k) + len(v) for _, fields in entries for k, v in fields.items()) < 3000

    history = await store.history(task_id)
    assert [(r.status, r.version, r.attempts) for r in history] == [
        (TaskState.PENDING, 1, 0),
        (TaskState.PROGRESS, 2, 1),
        (TaskState.PROGRESS, 3, 1),
        (TaskState.PROGRESS, 4, 1),
        (TaskState.PROGRESS, 5, 1),
        (TaskState.COMPLETE, 6, 1),
    ]
    assert [r.progress.percent if r.progress else None for r in history] == [
        None,
        None,
        25,
        50,
        75,
        75,
    ]
    assert all(r.payload == payload for r in history)
    assert [r.result for r in history] == [None] * 5 + [result]
    assert history[-1].model_dump() == (await store.get(task_id)).model_dump()


async def blocked_clients(redis: RedisClient) -> int:
    """Clients blocked in a command (XREAD) on the server, or on all masters of a cluster."""
    if isinstance(redis, RedisCluster):
        answers = await redis.info("clients", target_nodes=RedisCluster.PRIMARIES)
        return sum(int(info["blocked_clients"]) for info in answers.values())
    return int((await redis.info("clients"))["blocked_clients"])


async def test_a_follower_waiting_for_the_terminal_write_receives_it(
    store: TaskStore, redis_client: RedisClient
) -> None:
    # The terminal write rewrites the events stream (to give back its preallocated node):
    # a follower blocked on it must still be woken with the last event.
    task_id = new_task_id()
    await store.create(task_id, "noop", {})
    await store.transition(task_id, TaskState.PROGRESS, task="noop", start_delivery="t/0/1")
    already_blocked = await blocked_clients(redis_client)
    seen: list[TaskState] = []

    async def follow() -> None:
        async for record in store.follow(task_id, block_ms=30_000):
            assert record is not None, "the terminal write must wake the follower"
            seen.append(record.status)

    follower = asyncio.create_task(follow())
    await eventually(lambda: blocked_clients(redis_client), lambda n: n > already_blocked)
    await store.transition(task_id, TaskState.COMPLETE, task="noop", result="done", attempt=1)
    await asyncio.wait_for(follower, timeout=10)
    assert seen == [TaskState.PROGRESS, TaskState.COMPLETE]


async def test_a_queued_task_without_a_stream_is_followed_and_has_a_history(
    store: TaskStore, redis_client: RedisClient
) -> None:
    # The create appends no event: the record is version 1. A follower that starts while the
    # task is queued waits on a stream that does not exist yet and sees its first write.
    task_id = new_task_id()
    await store.create(task_id, "noop", {})
    assert not await redis_client.exists(store.keys.events(task_id))
    assert [(r.status, r.version) for r in await store.history(task_id)] == [(TaskState.PENDING, 1)]
    seen: list[tuple[TaskState, int]] = []
    first_read = asyncio.Event()

    async def follow() -> None:
        async for record in store.follow(task_id, block_ms=200):
            if record is not None:
                seen.append((record.status, record.version))
                first_read.set()

    follower = asyncio.create_task(follow())
    await asyncio.wait_for(first_read.wait(), timeout=10)
    await store.transition(task_id, TaskState.PROGRESS, task="noop", start_delivery="t/0/1")
    await store.transition(task_id, TaskState.COMPLETE, result=1, attempt=1)
    await asyncio.wait_for(follower, timeout=10)
    assert seen == [(TaskState.PENDING, 1), (TaskState.PROGRESS, 2), (TaskState.COMPLETE, 3)]


async def test_a_history_whose_oldest_events_were_trimmed_starts_at_the_first_kept(
    store: TaskStore, redis_client: RedisClient
) -> None:
    task_id = new_task_id()
    await store.create(task_id, "sleep", {})
    await store.transition(task_id, TaskState.PROGRESS, task="sleep", start_delivery="t/0/1")
    for step in range(EVENTS_MAX_LEN + 200):
        await store.transition(
            task_id, TaskState.PROGRESS, progress=Progress(percent=step % 100), attempt=1
        )
    entries = await redis_client.xrange(store.keys.events(task_id), count=1)
    first_version = int(entries[0][1][b"version"])
    assert first_version > 2, "the stream's cap should have dropped the oldest events"

    history = await store.history(task_id)
    # No PENDING made up from the record in front of a gap: the first state is the first
    # event kept, and the versions run on from there without a hole.
    assert history[0].version == first_version
    assert [r.version for r in history] == list(range(first_version, history[-1].version + 1))
    assert history[-1].model_dump() == (await store.get(task_id)).model_dump()


async def _group_member(store: TaskStore) -> tuple[uuid.UUID, uuid.UUID]:
    """A group of one noop member, created and started; returns (workflow id, member id)."""
    workflow_id = uuid.uuid4()
    await store.workflow_book().create(
        workflow_id,
        WorkflowSpec(kind=WorkflowKind.GROUP, tasks=[Signature(task="noop", payload={})]),
    )
    member = member_id(workflow_id, 0)
    await store.create(member, "noop", {}, workflow=WorkflowLink(id=workflow_id, step=0))
    await store.transition(member, TaskState.PROGRESS, task="noop", start_delivery="t/0/1")
    return workflow_id, member


async def test_a_terminal_write_told_the_name_and_workflow_reads_nothing_first(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow_id, member = await _group_member(store)
    plain = uuid.uuid4()
    await store.create(plain, "noop", {})
    await store.transition(plain, TaskState.PROGRESS, task="noop", start_delivery="t/0/2")
    reads = 0
    hmget = store._redis.hmget

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return hmget(*args, **kwargs)

    monkeypatch.setattr(store._redis, "hmget", counted)

    done = await store.transition(
        plain, TaskState.COMPLETE, task="noop", result=1, attempt=1, workflow=None
    )
    member_done = await store.transition(
        member, TaskState.COMPLETE, task="noop", result=2, attempt=1, workflow=workflow_id
    )

    assert reads == 0
    assert (done.status, member_done.status) == (TaskState.COMPLETE, TaskState.COMPLETE)
    # The member's write finished its group, in the same script.
    assert (await store.workflow_book().read(workflow_id)).status == "COMPLETE"


async def test_a_member_written_as_if_in_no_workflow_still_tells_its_workflow(
    store: TaskStore,
) -> None:
    # A member's message from a version that did not carry its workflow: the workflow is
    # still told (the record says it is a member).
    workflow_id, member = await _group_member(store)
    await store.transition(member, TaskState.COMPLETE, task="noop", result=2, workflow=None)
    assert (await store.workflow_book().read(workflow_id)).status == "COMPLETE"
