"""Retries through the retry topic, time limits, dead letters and re-drive, on the real stack."""

from __future__ import annotations

import uuid
from datetime import timedelta

from aiokafka import AIOKafkaConsumer

from services.core import topics
from services.core.kafka_topics import ensure_topics
from services.core.lag import group_lag
from services.core.models import (
    DeadLetter,
    Progress,
    ScheduledRetry,
    TaskError,
    TaskMessage,
    utcnow,
)
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.core.states import TaskState
from services.core.store import TaskStore
from services.tasks import catalog
from services.worker.redrive import redrive
from services.worker.retries import RetryScheduler
from tests.conftest import StartApps
from tests.helpers import follow_events, record_of, submit, wait_status


async def dead_letters(settings: Settings, count: int) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        topics.dead_letter_topic(settings.namespace),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        for _ in range(60):  # bounded: at most 60 one-second polls
            batch = await consumer.getmany(timeout_ms=1000)
            letters += [
                DeadLetter.model_validate_json(r.value) for rs in batch.values() for r in rs
            ]
            if len(letters) >= count:
                break
    finally:
        await consumer.stop()
    return letters


async def test_a_failing_attempt_is_retried_with_backoff_until_it_succeeds(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        accepted = await submit(client, "flaky", {"fail_times": 2})
        records = await follow_events(client, accepted["id"])

    statuses = [r["status"] for r in records]
    assert statuses.count("RETRY") == 2
    assert statuses[-1] == "COMPLETE"
    final = records[-1]
    assert final["attempts"] == 3
    assert final["result"] == {"succeeded_on_attempt": 3}
    retry = next(r for r in records if r["status"] == "RETRY")
    assert retry["error"]["type"] == "FlakyError"
    assert retry["retry_at"] > retry["updated_at"]


async def test_the_last_failed_attempt_ends_in_failure_and_a_dead_letter(
    start_apps: StartApps, namespace: str, settings: Settings
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        accepted = await submit(client, "flaky", {"fail_times": 5})
        final = await wait_status(client, accepted["id"], "FAILURE")
        plain = await submit(client, "fail", {"message": "no retry policy"})
        plain_final = await wait_status(client, plain["id"], "FAILURE")

    assert final["attempts"] == catalog.get("flaky").retry.max_attempts == 3
    assert final["error"]["type"] == "FlakyError"
    assert plain_final["attempts"] == 1
    letters = {str(letter.message.id): letter for letter in await dead_letters(settings, 2)}
    assert letters[accepted["id"]].attempts == 3
    assert letters[accepted["id"]].error.message == "attempt 3 fails on purpose"
    assert letters[plain["id"]].error.type == "DemoTaskError"


async def test_an_attempt_over_its_time_limit_fails_and_is_retried(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        accepted = await submit(client, "flaky", {"fail_times": 1, "hang_seconds": 30})
        records = await follow_events(client, accepted["id"])

    retry = next(r for r in records if r["status"] == "RETRY")
    assert retry["error"]["type"] == "TimeoutError"
    assert "2.0 s time limit" in retry["error"]["message"]
    assert records[-1]["status"] == "COMPLETE"
    assert records[-1]["attempts"] == 2


async def test_redrive_submits_dead_letters_again_as_new_tasks_once(
    start_apps: StartApps, namespace: str, settings: Settings, store: TaskStore
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        failed = [await submit(client, "fail", {"message": f"m{i}"}) for i in range(2)]
        for task in failed:
            await wait_status(client, task["id"], "FAILURE")
        await dead_letters(settings, 2)

        listed = await redrive(settings, catalog, dry_run=True)
        assert {str(item.old_id) for item in listed} == {t["id"] for t in failed}
        assert all(item.new_id is None for item in listed)

        redriven = await redrive(settings, catalog)
        assert {str(item.old_id) for item in redriven} == {t["id"] for t in failed}
        assert {item.error for item in redriven} == {"m0", "m1"}
        new_ids = set()
        for item in redriven:
            assert item.new_id is not None
            new_ids.add(str(item.new_id))
            new = await wait_status(client, str(item.new_id), "FAILURE")  # fails again
            old = await record_of(client, str(item.old_id))
            assert new["payload"] == old["payload"]
            assert old["status"] == "FAILURE"  # the original record is left as it was

        # The originals are not re-driven twice; only the copies' own new dead letters remain.
        remaining = await redrive(settings, catalog, dry_run=True)
        assert {str(item.old_id) for item in remaining} == new_ids


async def test_a_sync_attempt_over_its_time_limit_cannot_take_the_retry_back(
    start_apps: StartApps, namespace: str, store: TaskStore
) -> None:
    # The first attempt's thread runs on after its time limit and keeps reporting progress;
    # those reports belong to an attempt that is over and must not reopen the task.
    apps = start_apps(namespace)
    async with apps.client() as client:
        accepted = await submit(client, "overrun", {"overrun_attempts": 1, "seconds": 4})
        final = await wait_status(client, accepted["id"], "COMPLETE", within=30)
    assert final["attempts"] == 2
    assert final["result"] == {"finished_on_attempt": 2}
    statuses = [r.status for r in await store.history(uuid.UUID(accepted["id"]))]
    assert statuses.index("RETRY") < statuses.index("COMPLETE")
    after_retry = statuses[statuses.index("RETRY") + 1 :]
    assert after_retry[0] == "PROGRESS"  # the second attempt's start, nothing in between


async def test_a_task_that_failed_once_then_succeeded_shows_no_error(
    start_apps: StartApps, namespace: str, store: TaskStore
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        accepted = await submit(client, "flaky", {"fail_times": 1})
        final = await wait_status(client, accepted["id"], "COMPLETE")
    assert (final["attempts"], final["error"], final["retry_at"]) == (2, None, None)
    history = await store.history(uuid.UUID(accepted["id"]))
    # Kept in the history: the retry, and the second attempt while it ran, show it.
    assert {r.error.type for r in history if r.error} == {"FlakyError"}
    assert history[-1].error is None


async def test_an_old_retry_message_does_not_cut_a_later_backoff_short(
    settings: Settings, store: TaskStore
) -> None:
    # Attempt 2 failed and waits a minute; the retry message of attempt 1, re-published after a
    # rebalance, arrives now. It must not start attempt 3 early.
    await ensure_topics(settings, catalog)
    task_id = uuid.uuid4()
    message = TaskMessage(id=task_id, task="flaky", payload={"fail_times": 5})
    await store.create(task_id, "flaky", message.payload)
    for attempt in (1, 2):
        await store.transition(
            task_id,
            TaskState.PROGRESS,
            progress=Progress(percent=0),
            start_delivery=f"r/0/{attempt}",
        )
        due = utcnow() + timedelta(seconds=60 if attempt == 2 else 0)
        await store.transition(
            task_id, TaskState.RETRY, error=TaskError(type="FlakyError", message="x"), retry_at=due
        )
    publisher = TaskPublisher(settings)
    try:
        old = ScheduledRetry(message=message, due_at=utcnow(), attempt=1)
        await RetryScheduler(store, publisher, settings).run(
            old.model_dump_json().encode(), "r/0/0"
        )
    finally:
        await publisher.stop()
    rows = await group_lag(
        settings.kafka_bootstrap_servers, settings.consumer_group, [settings.task_topic("flaky")]
    )
    assert sum(row.end_offset for row in rows) == 0, "attempt 3 was sent before it was due"


async def test_a_sync_task_starts_only_when_a_thread_is_free_for_it(
    start_apps: StartApps, namespace: str
) -> None:
    # Two threads, many slots: six 0.6 s sync tasks with a 1 s time limit. Were they all started
    # at once, four would wait for a thread on the clock and run over their limit; each must
    # instead start when a thread frees and finish on its first attempt.
    apps = start_apps(namespace, env={"KT_WORKER_THREADS": "2"})
    async with apps.client() as client:
        accepted = [
            await submit(client, "overrun", {"overrun_attempts": 1, "seconds": 0.6})
            for _ in range(6)
        ]
        finals = [await wait_status(client, a["id"], "COMPLETE", within=60) for a in accepted]
    assert [f["result"] for f in finals] == [{"finished_on_attempt": 1}] * 6
    assert [f["attempts"] for f in finals] == [1] * 6
