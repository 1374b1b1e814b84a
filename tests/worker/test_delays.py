"""Delayed tasks (countdown, eta) and expiry, on the real stack: held in Redis, never in a
partition, queued by any worker's timer loop when due."""

from __future__ import annotations

import asyncio
import statistics
import uuid
from datetime import datetime, timedelta

from devstack import processes, stack
from services.core.models import utcnow
from services.core.states import TaskState
from services.core.store import TaskStore
from tests.conftest import StartApps
from tests.helpers import record_of, submit, wait_status


async def started_at(store: TaskStore, task_id: str) -> datetime:
    """When the task's first attempt started (its first PROGRESS write)."""
    history = await store.history(uuid.UUID(task_id))
    return next(r.updated_at for r in history if r.status is TaskState.PROGRESS)


async def test_a_delayed_task_is_pending_with_its_due_time_and_starts_when_due(
    start_apps: StartApps, namespace: str, store: TaskStore
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        response = await client.post(
            "/tasks", json={"task": "noop", "payload": {"echo": "later"}, "countdown": 3}
        )
        assert response.status_code == 202, response.text
        delayed = response.json()
        assert delayed["status"] == "PENDING"
        assert delayed["held_by"] == "eta"
        due = datetime.fromisoformat(delayed["due_at"])
        assert 2.5 < (due - datetime.fromisoformat(delayed["created_at"])).total_seconds() <= 3.1

        # It holds no partition: a task submitted after it runs first.
        now = await submit(client, "noop", {"echo": "now"})
        await wait_status(client, now["id"], "COMPLETE", within=30)
        assert (await record_of(client, delayed["id"]))["status"] == "PENDING"

        done = await wait_status(client, delayed["id"], "COMPLETE", within=30)
    assert done["result"] == "later"
    lateness = (await started_at(store, delayed["id"]) - due).total_seconds()
    assert 0 <= lateness < 2, f"started {lateness:.3f} s after its due time"


async def test_delayed_tasks_due_during_a_worker_restart_still_start_on_time(
    start_apps: StartApps, namespace: str, store: TaskStore
) -> None:
    # Two workers; the one restarted goes away just before the tasks are due and is back
    # after. The due times live in Redis, not in the worker, so the other one queues them.
    apps = start_apps(namespace, workers=2)
    leaving = apps.workers[0]
    async with apps.client() as client:
        delayed = []
        for i in range(50):
            response = await client.post(
                "/tasks", json={"task": "noop", "payload": {}, "countdown": 4 + 0.1 * i}
            )
            assert response.status_code == 202, response.text
            delayed.append(response.json())
        first_due = datetime.fromisoformat(delayed[0]["due_at"])
        await asyncio.sleep(max((first_due - utcnow()).total_seconds() - 1, 0))
        stack.signal_app(leaving, "TERM")  # a rolling restart: the worker leaves the group
        replacement = apps.add_worker(wait=False)
        for task in delayed:
            await wait_status(client, task["id"], "COMPLETE", within=60)
        assert processes.wait_for(lambda: not processes.alive(leaving.pid), timeout=30)
        stack.wait_app_ready(replacement)
    late = [
        (
            await started_at(store, task["id"]) - datetime.fromisoformat(task["due_at"])
        ).total_seconds()
        for task in delayed
    ]
    cuts = statistics.quantiles(late, n=10)
    print(
        f"start - due over {len(late)} tasks (a worker restarted at the first due time): "
        f"min {min(late):.3f} s, median {statistics.median(late):.3f} s, p90 {cuts[8]:.3f} s, "
        f"max {max(late):.3f} s"
    )
    assert min(late) >= 0, "a delayed task started before it was due"
    assert max(late) < 3, f"a delayed task started {max(late):.3f} s late"


async def test_a_task_not_started_before_it_expires_ends_expired(
    start_apps: StartApps, namespace: str, store: TaskStore
) -> None:
    apps = start_apps(namespace, workers=0)
    async with apps.client() as client:
        response = await client.post("/tasks", json={"task": "noop", "payload": {}, "expires": 1})
        assert response.status_code == 202, response.text
        task = response.json()
        expires = datetime.fromisoformat(task["expires_at"])
        # No worker runs until the expiry has passed (time itself is the condition here).
        await asyncio.sleep((expires - utcnow()).total_seconds() + 0.2)
        apps.add_worker()
        expired = await wait_status(client, task["id"], "EXPIRED", within=60)
    assert expired["attempts"] == 0
    statuses = [r.status for r in await store.history(uuid.UUID(task["id"]))]
    assert statuses == [TaskState.PENDING, TaskState.EXPIRED]


async def test_submission_options_that_cannot_hold_are_422s_that_say_why(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace, workers=0)
    soon = (utcnow() + timedelta(seconds=60)).isoformat()
    past = (utcnow() - timedelta(seconds=60)).isoformat()
    cases = [
        ({"countdown": 5, "eta": soon}, "countdown", "not both"),
        ({"expires": past}, "expires", "already past"),
        ({"eta": soon, "expires": 30}, "expires", "could never start"),
        ({"countdown": -1}, "countdown", "greater than or equal to 0"),
    ]
    async with apps.client() as client:
        for options, field, words in cases:
            response = await client.post("/tasks", json={"task": "noop", **options})
            assert response.status_code == 422, (options, response.text)
            detail = response.json()["detail"][0]
            assert detail["loc"][-1] == field or field in detail["loc"], (options, detail)
            assert words in detail["msg"], (options, detail)
        wrong = await client.post("/tasks", json={"task": "fail", "priority": "high"})
        assert wrong.status_code == 422
        assert "prioritized=True" in wrong.json()["detail"][0]["msg"]
