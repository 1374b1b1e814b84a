"""Cancellation: a queued task never starts, a running one stops, a finished one refuses."""

from __future__ import annotations

import asyncio
import uuid

from tests.conftest import StartApps
from tests.helpers import eventually, follow_events, log_lines, record_of, submit, wait_status


async def test_a_cancelled_pending_task_never_starts(start_apps: StartApps, namespace: str) -> None:
    apps = start_apps(namespace, workers=0)
    async with apps.client() as client:
        accepted = await submit(client, "noop", {"echo": "never"})
        cancelled = await client.post(f"/tasks/{accepted['id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "CANCELLED"
        # The worker then consumes its message (and a later one, to know it got that far).
        apps.add_worker()
        later = await submit(client, "noop", {"echo": "later"})
        await wait_status(client, later["id"], "COMPLETE")
        final = await record_of(client, accepted["id"])

    assert (final["status"], final["attempts"], final["result"]) == ("CANCELLED", 0, None)


async def test_a_running_task_stops_at_its_next_progress_report(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        accepted = await submit(client, "sleep", {"seconds": 20, "steps": 40})
        follower = asyncio.create_task(follow_events(client, accepted["id"]))
        await wait_status(client, accepted["id"], "PROGRESS")
        response = await client.post(f"/tasks/{accepted['id']}/cancel")
        assert response.status_code == 200
        records = await asyncio.wait_for(follower, timeout=30)
        # The worker noticed at its next progress report and stopped the task.
        stopped = await eventually(
            lambda: log_lines(apps.workers[0].log, accepted["id"]),
            lambda lines: any(line["event"] == "task stopped: it was cancelled" for line in lines),
            within=10,
        )
        final = await record_of(client, accepted["id"])

    assert records[-1]["status"] == "CANCELLED"
    assert final["version"] == records[-1]["version"]
    assert final["result"] is None
    assert all(line["task"] == "sleep" for line in stopped)


async def test_cancelling_a_finished_task_is_409_and_unknown_is_404(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        accepted = await submit(client, "noop", {})
        await wait_status(client, accepted["id"], "COMPLETE")
        finished = await client.post(f"/tasks/{accepted['id']}/cancel")
        unknown = await client.post(f"/tasks/{uuid.uuid4()}/cancel")
        final = await record_of(client, accepted["id"])

    assert finished.status_code == 409
    assert "already COMPLETE" in finished.json()["detail"]
    assert unknown.status_code == 404
    assert final["status"] == "COMPLETE"
