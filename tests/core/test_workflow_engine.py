"""Starting a workflow with an Idempotency-Key, on the real Redis (a server and a cluster) and
the real Kafka: the same request answers the first workflow and submits nothing twice (with
Kafka unreachable too), another request is a conflict, and a start that failed frees its key
for the retry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devstack import processes
from services.core.errors import IdempotencyConflictError
from services.core.kafka_topics import ensure_topics
from services.core.keys import new_task_id
from services.core.publisher import TaskPublisher
from services.core.redis_client import RedisClient
from services.core.settings import Settings
from services.core.store import TaskStore
from services.core.submission import Submitter
from services.core.workflow_book import Idempotency
from services.core.workflow_engine import WorkflowEngine
from services.core.workflows import Signature, WorkflowKind, WorkflowSpec
from services.tasks import catalog

GROUP = WorkflowSpec(
    kind=WorkflowKind.GROUP,
    tasks=[Signature(task="add", payload={"x": 1}), Signature(task="add", payload={"x": 2})],
)


@pytest.fixture
async def engine(store: TaskStore, settings: Settings) -> AsyncIterator[WorkflowEngine]:
    await ensure_topics(settings, catalog)
    publisher = TaskPublisher(settings)
    yield WorkflowEngine(store, Submitter(store, publisher, catalog, settings))
    await publisher.stop()


async def test_the_same_key_and_workflow_answer_the_first_and_submit_nothing_again(
    engine: WorkflowEngine, store: TaskStore
) -> None:
    first, started = await engine.start(GROUP, idempotency_key="order-7")
    assert started
    again, started_again = await engine.start(GROUP, idempotency_key="order-7")
    assert not started_again
    assert again.id == first.id
    assert [m.task_id for m in again.members] == [m.task_id for m in first.members]
    assert all(m.task_id is not None for m in first.members)
    listed, _ = await store.list_tasks(task="add", limit=10)
    assert len(listed) == 2  # one task per member, not two

    other, started_other = await engine.start(GROUP)  # no key: a workflow of its own
    assert started_other
    assert other.id != first.id


async def test_the_same_key_for_another_workflow_is_a_conflict_that_names_the_first(
    engine: WorkflowEngine,
) -> None:
    first, _ = await engine.start(GROUP, idempotency_key="order-8")
    chain = GROUP.model_copy(update={"kind": WorkflowKind.CHAIN})
    with pytest.raises(IdempotencyConflictError, match=f"workflow {first.id}"):
        await engine.start(chain, idempotency_key="order-8")


async def test_with_kafka_unreachable_the_retry_gets_the_workflow_its_reaper_will_run(
    store: TaskStore, settings: Settings
) -> None:
    """A step, once stored, is the reaper's to publish: the start succeeds without Kafka, and
    the client's retry with its key answers that workflow instead of starting a second."""
    unreachable = settings.model_copy(
        update={
            "kafka_bootstrap_servers": f"127.0.0.1:{processes.free_port()}",
            "kafka_request_timeout_ms": 1000,
        }
    )
    publisher = TaskPublisher(unreachable)
    engine = WorkflowEngine(store, Submitter(store, publisher, catalog, unreachable))
    try:
        first, started = await engine.start(GROUP, idempotency_key="order-9")
        assert started
        again, started_again = await engine.start(GROUP, idempotency_key="order-9")
    finally:
        await publisher.stop()
    assert (again.id, started_again) == (first.id, False)
    assert [m.task_id for m in again.members] == [m.task_id for m in first.members]


async def test_a_key_is_freed_only_by_the_workflow_that_claimed_it(
    store: TaskStore, redis_client: RedisClient
) -> None:
    """What a start that failed (its workflow cancelled) does, so the retry starts afresh; a
    release for another workflow leaves the key alone."""
    book = store.workflow_book()
    claim = Idempotency.of("order-10", GROUP)
    claimed = new_task_id("order-10")
    assert await book.create(claimed, GROUP, idempotency=claim) is None
    key = store.keys.idempotency("order-10")
    await book.release(new_task_id("order-10"), claim)
    assert await redis_client.get(key) == claim.value(claimed).encode()
    await book.release(claimed, claim)
    assert not await redis_client.exists(key)
