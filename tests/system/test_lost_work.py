"""Work that a fault took away: messages gone from Kafka, records or writes gone from Redis,
a worker gone while it held a task. Kafka (acks=all) is the durable log; nothing here may
leave a task PENDING or PROGRESS forever, and nothing may be run that the client was told
was refused."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from services.core.errors import TaskNotFoundError
from services.core.kafka_topics import ensure_topics
from services.core.lag import topic_partitions
from services.core.models import Progress, TaskError, TaskMessage, TaskRecord
from services.core.redis_client import RedisClient
from services.core.settings import Settings
from services.core.states import TaskState
from services.core.store import TaskStore
from services.tasks import catalog
from tests.conftest import StartApps
from tests.helpers import eventually, submit, wait_status
from tests.worker.test_retries import dead_letters

# Short lease and sweep so the bounds are seconds, not the production half-minute.
QUICK_REAPER = {
    "KT_WORKER_LEASE_SECONDS": "3",
    "KT_WORKER_SWEEP_INTERVAL_SECONDS": "0.5",
}


async def produce(settings: Settings, topic: str, value: bytes, key: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def record_or_none(store: TaskStore, task_id: uuid.UUID) -> TaskRecord | None:
    try:
        return await store.get(task_id)
    except TaskNotFoundError:
        return None


async def test_pending_tasks_whose_messages_are_gone_from_kafka_run_anyway(
    start_apps: StartApps, namespace: str, settings: Settings
) -> None:
    # Accepted (202) while no worker runs, then their messages vanish from the log: what a
    # Kafka whose data was lost (or a formatted local Kafka) leaves behind.
    api = start_apps(namespace, workers=0, env=QUICK_REAPER)
    async with api.client() as client:
        accepted = [await submit(client, "noop", {"echo": str(i)}) for i in range(6)]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        partitions = await topic_partitions(admin, [settings.task_topic("noop")])
        # -1: up to the high watermark, as `kafka-delete-records` does.
        await admin.delete_records(
            {tp: RecordsToDelete(before_offset=-1) for tp in partitions}, timeout_ms=10_000
        )
    finally:
        await admin.close()

    workers = start_apps(namespace, api=False, env=QUICK_REAPER)
    async with api.client() as client:
        finals = [await wait_status(client, a["id"], "COMPLETE", within=60) for a in accepted]
    assert [f["result"] for f in finals] == [str(i) for i in range(6)]
    assert workers.workers


async def test_a_running_task_whose_worker_is_gone_runs_again(
    start_apps: StartApps, namespace: str, redis_client: RedisClient
) -> None:
    # PROGRESS, held by a delivery whose worker no longer exists and whose message is
    # committed: what a lost COMPLETE write (or a worker lost with its Kafka data) leaves.
    store = TaskStore(redis_client, namespace=namespace, result_ttl_seconds=60, lease_seconds=1)
    task_id = uuid.uuid4()
    await store.create(task_id, "noop", {"echo": "orphan"})
    await store.confirm_published(task_id, position=f"{namespace}.tasks.noop/0/999")
    await store.transition(
        task_id,
        TaskState.PROGRESS,
        progress=Progress(percent=40),
        start_delivery=f"{namespace}.tasks.noop/0/999",
    )

    apps = start_apps(namespace, env=QUICK_REAPER)
    async with apps.client() as client:
        final = await wait_status(client, str(task_id), "COMPLETE", within=60)
    assert final["result"] == "orphan"
    assert final["attempts"] == 2


async def test_a_message_whose_record_was_lost_is_run_from_the_message(
    start_apps: StartApps, namespace: str, settings: Settings, store: TaskStore
) -> None:
    await ensure_topics(settings, catalog)
    task_id = uuid.uuid4()
    message = TaskMessage(id=task_id, task="noop", payload={"echo": "from kafka"})
    await produce(
        settings, settings.task_topic("noop"), message.model_dump_json().encode(), str(task_id)
    )
    apps = start_apps(namespace, env=QUICK_REAPER)
    final = await eventually(
        lambda: record_or_none(store, task_id),
        lambda record: record is not None and record.status is TaskState.COMPLETE,
        within=60,
    )
    assert final is not None
    assert final.result == "from kafka"
    assert apps.workers


async def test_an_unconfirmed_task_still_queued_after_the_deadline_runs_once(
    start_apps: StartApps, namespace: str, settings: Settings, redis_client: RedisClient
) -> None:
    # The API stored it and Kafka has it, but the confirmation never reached Redis: the task
    # is queued behind others, not lost. It must run, not be failed as "never published".
    await ensure_topics(settings, catalog)
    lagging = TaskStore(
        redis_client, namespace=namespace, result_ttl_seconds=60, publish_deadline_seconds=0.5
    )
    task_id = uuid.uuid4()
    await lagging.create(task_id, "noop", {"echo": "queued"})
    message = TaskMessage(id=task_id, task="noop", payload={"echo": "queued"})
    await produce(
        settings, settings.task_topic("noop"), message.model_dump_json().encode(), str(task_id)
    )
    apps = start_apps(namespace, env=QUICK_REAPER)
    async with apps.client() as client:
        final = await wait_status(client, str(task_id), "COMPLETE", "FAILURE", within=60)
    assert final["status"] == "COMPLETE", final["error"]
    assert final["attempts"] == 1


async def test_a_failure_whose_worker_died_before_its_dead_letter_gets_one(
    start_apps: StartApps, namespace: str, settings: Settings, redis_client: RedisClient
) -> None:
    # FAILURE is stored first and the dead letter written from it: a worker that died in
    # between leaves the letter to the reaper.
    store = TaskStore(redis_client, namespace=namespace, result_ttl_seconds=60, lease_seconds=1)
    task_id = uuid.uuid4()
    await store.create(task_id, "fail", {"message": "lost letter"})
    started = await store.transition(task_id, TaskState.PROGRESS, start_delivery="t/0/0")
    await store.transition(
        task_id,
        TaskState.FAILURE,
        error=TaskError(type="DemoTaskError", message="lost letter"),
        attempt=started.attempts,
    )
    start_apps(namespace, env=QUICK_REAPER)
    letters = await dead_letters(settings, 1)
    assert [str(letter.message.id) for letter in letters] == [str(task_id)]
    assert letters[0].error.message == "lost letter"
    assert await store.overdue() == []
