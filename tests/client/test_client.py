"""The Python client against the real local stack (no mocked transport)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from devstack.processes import free_port
from services.client import (
    AsyncClient,
    Client,
    Priority,
    ServiceUnavailable,
    TaskCancelledError,
    TaskExpired,
    TaskFailed,
    TaskNotFound,
    TaskState,
    Unauthorized,
    WaitTimeout,
    WorkflowFailed,
    WorkflowState,
    chain,
    chord,
    group,
    sig,
)
from tests.conftest import AppStack, StartApps

KEY = "client-test-key"


@pytest.fixture
def apps(start_apps: StartApps, namespace: str) -> AppStack:
    return start_apps(namespace, env={"KT_API_KEYS": json.dumps([KEY])})


def url(apps: AppStack) -> str:
    assert apps.api is not None
    return apps.api.url


async def test_async_client_submits_follows_and_waits(apps: AppStack) -> None:
    async with AsyncClient(url(apps), api_key=KEY) as tasks:
        submitted = await tasks.submit("sleep", {"seconds": 0.6, "steps": 3})
        assert submitted.status is TaskState.PENDING
        seen = [record.status async for record in tasks.events(submitted.id)]
        done = await tasks.wait(submitted.id, timeout=30)
        fetched = await tasks.get(submitted.id)
        page, _ = await tasks.list(task="sleep", limit=10)

    assert seen[-1] is TaskState.COMPLETE
    assert TaskState.PROGRESS in seen
    assert done.result == {"slept_seconds": 0.6}
    assert fetched == done
    assert [r.id for r in page] == [submitted.id]


async def test_failures_surface_as_typed_exceptions(apps: AppStack) -> None:
    async with AsyncClient(url(apps), api_key=KEY) as tasks:
        failing = await tasks.submit("fail", {"message": "remote boom"})
        with pytest.raises(TaskFailed) as failed:
            await tasks.wait(failing.id, timeout=30)

        slow = await tasks.submit("sleep", {"seconds": 30, "steps": 30})
        with pytest.raises(WaitTimeout) as timed_out:
            await tasks.wait(slow.id, timeout=1.5)
        await tasks.cancel(slow.id)
        with pytest.raises(TaskCancelledError):
            await tasks.wait(slow.id, timeout=30)

        with pytest.raises(TaskNotFound):
            await tasks.get(uuid.uuid4())

    assert failed.value.error_type == "DemoTaskError"
    assert failed.value.remote_message == "remote boom"
    assert "DemoTaskError: remote boom" in (failed.value.remote_traceback or "")
    assert timed_out.value.last is not None
    assert timed_out.value.last.status is TaskState.PROGRESS


async def test_wrong_key_is_unauthorized_and_a_dead_api_is_unavailable(apps: AppStack) -> None:
    async with AsyncClient(url(apps), api_key="wrong") as tasks:
        with pytest.raises(Unauthorized):
            await tasks.submit("noop")
    nobody = f"http://127.0.0.1:{free_port()}"
    async with AsyncClient(nobody, retries=2, timeout=5) as tasks:
        with pytest.raises(ServiceUnavailable):
            await tasks.get(uuid.uuid4())


async def test_an_idempotent_submission_can_be_repeated(apps: AppStack) -> None:
    async with AsyncClient(url(apps), api_key=KEY) as tasks:
        first = await tasks.submit("noop", {"echo": "x"}, idempotency_key="job-7")
        again = await tasks.submit("noop", {"echo": "x"}, idempotency_key="job-7")
    assert again.id == first.id


def test_sync_client_does_the_same(apps: AppStack) -> None:
    with Client(url(apps), api_key=KEY) as tasks:
        submitted = tasks.submit("noop", {"echo": "sync"})
        done = tasks.wait(submitted.id, timeout=30)
        states = [r.status for r in tasks.events(submitted.id)]
        failing = tasks.submit("fail", {})
        with pytest.raises(TaskFailed):
            tasks.wait(failing.id, timeout=30)
        with pytest.raises(TaskNotFound):
            tasks.cancel(uuid.uuid4())
    assert done.result == "sync"
    assert states == [TaskState.COMPLETE]


async def test_the_client_reads_its_settings_from_the_environment(
    apps: AppStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_TASKS_URL", url(apps))
    monkeypatch.setenv("KAFKA_TASKS_API_KEY", KEY)
    async with AsyncClient() as tasks:
        record = await tasks.submit("noop")
        assert (await asyncio.wait_for(tasks.wait(record.id), 30)).status is TaskState.COMPLETE


async def test_wait_polls_when_the_api_serves_all_the_streams_it_may(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace, env={"KT_API_MAX_EVENT_STREAMS": "1"})
    async with AsyncClient(url(apps)) as tasks:
        held = await tasks.submit("sleep", {"seconds": 3, "steps": 1})
        waited = await tasks.submit("sleep", {"seconds": 0.2, "steps": 1})
        follower = tasks.events(held.id)
        await anext(follower)  # the only stream slot is now taken
        with pytest.raises(ServiceUnavailable):
            await anext(tasks.events(waited.id))
        done = await tasks.wait(waited.id, timeout=30)  # the stream is refused: it polls
        with Client(url(apps)) as sync_tasks:
            other = await asyncio.to_thread(sync_tasks.submit, "noop", {"echo": "x"})
            polled = await asyncio.to_thread(sync_tasks.wait, other.id, timeout=30)
        await follower.aclose()
    assert done.status is TaskState.COMPLETE
    assert polled.result == "x"


async def test_options_priorities_expiry_and_schedules_through_the_client(
    start_apps: StartApps, namespace: str
) -> None:
    schedule = {"name": "every-minute", "task": "noop", "cron": "* * * * *"}
    apps = start_apps(namespace, workers=0, env={"KT_SCHEDULES": json.dumps([schedule])})
    async with AsyncClient(url(apps)) as tasks:
        eta = datetime.now(UTC) + timedelta(minutes=5)
        later = await tasks.submit("sleep", {"seconds": 1}, eta=eta, priority=Priority.LOW)
        assert (later.status, later.due_at, later.priority) == (TaskState.PENDING, eta, "low")
        doomed = await tasks.submit("noop", expires=1)
        assert doomed.expires_at is not None
        [listed] = await tasks.schedules()
        assert (listed.name, listed.rule) == ("every-minute", "cron * * * * * (UTC)")
        assert listed.next_run_at.second == 0
        await asyncio.sleep((doomed.expires_at - datetime.now(UTC)).total_seconds() + 0.2)
        apps.add_worker()
        with pytest.raises(TaskExpired, match="expired"):
            await tasks.wait(doomed.id, timeout=60)


async def test_workflows_through_the_typed_builder(apps: AppStack) -> None:
    async with AsyncClient(url(apps), api_key=KEY) as tasks:
        flow = await tasks.submit_workflow(
            chord(group(sig("add", {"x": i}) for i in range(4)), sig("tally"))
        )
        assert flow.status is WorkflowState.RUNNING
        done = await tasks.wait_workflow(flow.id, timeout=60)
        key = f"adds-{uuid.uuid4()}"
        adds = chain(sig("add", {"x": 2}), sig("add", {"x": 3}))
        chained = await tasks.submit_workflow(adds, idempotency_key=key)
        assert (await tasks.wait_workflow(chained.id, timeout=60)).result == 5
        # The same key and workflow, sent again (a retry): the first one, not a second.
        again = await tasks.submit_workflow(adds, idempotency_key=key)
        assert (again.id, again.status, again.result) == (chained.id, WorkflowState.COMPLETE, 5)
        broken = await tasks.submit_workflow(chain(sig("fail"), sig("add")))
        with pytest.raises(WorkflowFailed) as failed:
            await tasks.wait_workflow(broken.id, timeout=60)
    assert done.result == {"sum": 6, "count": 4, "missing": 0}
    assert done.done == done.total == 4
    assert failed.value.record.failed is not None
    assert failed.value.record.failed.step == 0

    with Client(url(apps), api_key=KEY) as sync_tasks:
        running = sync_tasks.submit_workflow(group(sig("sleep", {"seconds": 30}, previous_as=None)))
        cancelled = sync_tasks.cancel_workflow(running.id)
        with pytest.raises(WorkflowFailed):
            sync_tasks.wait_workflow(running.id, timeout=30)
        with pytest.raises(TaskNotFound):
            sync_tasks.get_workflow(uuid.uuid4())
    assert cancelled.status is WorkflowState.CANCELLED
