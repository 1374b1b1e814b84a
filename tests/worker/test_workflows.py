"""Workflows (chains, groups, chords) on the real stack: results passed on, progress counted,
failures stopping what they must, cancel, and exactly-once callbacks through a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from devstack import processes
from services.core.models import Progress
from services.core.states import TaskState
from services.core.store import TaskStore
from tests.conftest import StartApps
from tests.helpers import eventually, record_of, wait_status

FAST_REAPER = {"KT_WORKER_SWEEP_INTERVAL_SECONDS": "0.5", "KT_WORKER_LEASE_SECONDS": "2"}


async def start_workflow(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/workflows", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/workflows/{response.json()['id']}"
    workflow: dict[str, Any] = response.json()
    return workflow


async def workflow_of(client: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    response = await client.get(f"/workflows/{workflow_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_workflow(
    client: httpx.AsyncClient, workflow_id: str, *statuses: str, within: float = 60
) -> dict[str, Any]:
    return await eventually(
        lambda: workflow_of(client, workflow_id),
        lambda w: w["status"] in statuses,
        within=within,
    )


async def tasks_named(client: httpx.AsyncClient, task: str) -> list[dict[str, Any]]:
    response = await client.get("/tasks", params={"task": task, "limit": 500})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_chain_passes_each_result_to_the_next_and_streams_its_members(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        started = await start_workflow(
            client,
            {
                "kind": "chain",
                "tasks": [
                    {"task": "add", "payload": {"x": 1}},
                    {"task": "add", "payload": {"x": 10}},
                    {"task": "add", "payload": {"x": 100}},
                ],
            },
        )
        assert started["status"] == "RUNNING"
        assert started["total"] == 3
        # Only the first link is submitted up front; the others wait for their turn.
        assert started["members"][0]["task_id"] is not None
        assert [m["task_id"] for m in started["members"][1:]] == [None, None]

        events = []
        async with aconnect_sse(client, "GET", f"/workflows/{started['id']}/events") as source:
            assert source.response.status_code == 200
            async for event in source.aiter_sse():
                events.append((event.event, json.loads(event.data)))
        done = await workflow_of(client, started["id"])
        third = await record_of(client, done["members"][2]["task_id"])

    assert done["status"] == "COMPLETE"
    assert done["result"] == 111
    assert done["results"] == [1, 11, 111]
    assert done["done"] == 3
    assert third["payload"] == {"x": 100, "previous": 11, "seconds": 0}  # defaults stored
    finished = [
        (data["step"], data["done"])
        for kind, data in events
        if kind == "member" and data["member_status"] == "COMPLETE"
    ]
    assert finished == [(0, 1), (1, 2), (2, 3)]
    submitted = [data["step"] for kind, data in events if data.get("member_status") == "PENDING"]
    # Each link is seen submitted before it finishes; the last one's submission may be
    # recorded after it finished, when the stream has ended with the workflow.
    assert submitted[:2] == [0, 1]
    assert events[-1][1]["status"] == "COMPLETE"


async def test_a_failing_link_stops_the_chain_and_is_named(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        started = await start_workflow(
            client,
            {
                "kind": "chain",
                "tasks": [
                    {"task": "add", "payload": {"x": 1}},
                    {
                        "task": "fail",
                        "payload": {"message": "link two breaks"},
                        "previous_as": None,
                    },
                    {"task": "add", "payload": {"x": 1}},
                ],
            },
        )
        failed = await wait_workflow(client, started["id"], "FAILURE", "COMPLETE")
        failing = await record_of(client, failed["members"][1]["task_id"])
        added = [task["id"] for task in await tasks_named(client, "add")]
    assert added == [failed["members"][0]["task_id"]]  # the third link never ran
    assert failed["status"] == "FAILURE"
    assert failed["failed"]["step"] == 1
    assert failed["failed"]["task_id"] == failing["id"]
    assert failed["failed"]["status"] == "FAILURE"
    assert failing["error"]["message"] == "link two breaks"
    assert failed["members"][2]["task_id"] is None  # never submitted
    assert failed["done"] == 2


async def test_a_group_counts_its_members_and_returns_their_results_in_order(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        started = await start_workflow(
            client,
            {
                "kind": "group",
                "tasks": [{"task": "add", "payload": {"x": i, "seconds": i}} for i in range(5)],
            },
        )
        assert all(m["task_id"] for m in started["members"])  # all submitted at once
        seen: list[int] = []

        async def progress() -> dict[str, Any]:
            workflow = await workflow_of(client, started["id"])
            if not seen or seen[-1] != workflow["done"]:
                seen.append(workflow["done"])
            return workflow

        done = await eventually(progress, lambda w: w["status"] != "RUNNING", within=60)
    assert done["status"] == "COMPLETE"
    assert done["results"] == [0, 1, 2, 3, 4]
    assert done["result"] == [0, 1, 2, 3, 4]
    assert done["done"] == done["total"] == 5
    assert seen == sorted(seen)
    assert any(0 < count < 5 for count in seen), f"no partial progress seen: {seen}"


async def test_a_chord_calls_back_once_when_members_are_redelivered_after_a_sigkill(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace, env=FAST_REAPER)
    members = 8
    async with apps.client() as client:
        started = await start_workflow(
            client,
            {
                "kind": "chord",
                "tasks": [
                    {"task": "add", "payload": {"x": i, "seconds": 3}} for i in range(members)
                ],
                "callback": {"task": "tally"},
            },
        )
        ids = [m["task_id"] for m in started["members"]]
        await eventually(
            lambda: asyncio.gather(*(record_of(client, i) for i in ids)),
            lambda records: any(r["status"] == "PROGRESS" for r in records),
        )
        processes.kill(apps.workers[0].pid)  # SIGKILL while members run
        assert not processes.alive(apps.workers[0].pid)
        apps.add_worker()
        apps.add_worker()
        done = await wait_workflow(client, started["id"], "COMPLETE", "FAILURE", within=120)
        records = [await record_of(client, i) for i in ids]
        callbacks = await tasks_named(client, "tally")
    assert done["status"] == "COMPLETE", done
    assert any(r["attempts"] >= 2 for r in records), "no member was run again"
    assert [r["status"] for r in records] == ["COMPLETE"] * members
    assert len(callbacks) == 1, "the callback was submitted more than once"
    assert callbacks[0]["id"] == done["callback"]["task_id"]
    assert callbacks[0]["attempts"] == 1
    assert callbacks[0]["payload"]["results"] == list(range(members))
    assert done["result"] == {"sum": sum(range(members)), "count": members, "missing": 0}
    assert done["done"] == members


async def test_a_chord_with_a_failing_member_skips_its_callback_unless_told_otherwise(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace)
    body: dict[str, Any] = {
        "kind": "chord",
        "tasks": [
            {"task": "add", "payload": {"x": 1}},
            {"task": "fail", "payload": {}},
            {"task": "add", "payload": {"x": 2, "seconds": 1}},
        ],
        "callback": {"task": "tally"},
    }
    async with apps.client() as client:
        skipped = await start_workflow(client, body)
        skipped = await wait_workflow(client, skipped["id"], "FAILURE", "COMPLETE")
        called = await start_workflow(client, body | {"call_on_failure": True})
        called = await wait_workflow(client, called["id"], "FAILURE", "COMPLETE")
        callbacks = await tasks_named(client, "tally")

    # Like Celery: every member finished (the group goes on), no callback.
    assert skipped["status"] == "FAILURE"
    assert skipped["done"] == 3
    assert skipped["failed"]["step"] == 1
    assert skipped["callback"]["task_id"] is None
    assert skipped["results"] == [1, None, 2]
    # call_on_failure: the callback runs with null in the failed member's place.
    assert called["status"] == "COMPLETE"
    assert called["failed"]["step"] == 1
    assert called["result"] == {"sum": 3, "count": 2, "missing": 1}
    assert [c["id"] for c in callbacks] == [called["callback"]["task_id"]]


async def test_cancelling_a_workflow_cancels_its_pending_and_running_members(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace, env={"KT_WORKER_CONCURRENCY": "2"})
    sleeper = {"task": "sleep", "payload": {"seconds": 60, "steps": 120}}
    async with apps.client() as client:
        chord = await start_workflow(
            client, {"kind": "chord", "tasks": [sleeper] * 4, "callback": {"task": "tally"}}
        )
        ids = [m["task_id"] for m in chord["members"]]
        running = await eventually(
            lambda: asyncio.gather(*(record_of(client, i) for i in ids)),
            lambda records: sum(r["status"] == "PROGRESS" for r in records) == 2,
        )
        assert sorted(r["status"] for r in running) == [
            "PENDING",
            "PENDING",
            "PROGRESS",
            "PROGRESS",
        ]
        response = await client.post(f"/workflows/{chord['id']}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "CANCELLED"
        members = [await wait_status(client, i, "CANCELLED", within=30) for i in ids]
        # An immutable link (Celery's .si()): it takes no result.
        link = sleeper | {"previous_as": None}
        chain = await start_workflow(client, {"kind": "chain", "tasks": [sleeper, link]})
        await wait_status(client, chain["members"][0]["task_id"], "PROGRESS")
        cancelled_chain = (await client.post(f"/workflows/{chain['id']}/cancel")).json()
        first = await wait_status(client, chain["members"][0]["task_id"], "CANCELLED")
        again = await client.post(f"/workflows/{chain['id']}/cancel")
        after = await workflow_of(client, chord["id"])
    assert [m["status"] for m in members] == ["CANCELLED"] * 4
    assert after["status"] == "CANCELLED"
    assert after["callback"]["task_id"] is None  # never submitted
    assert cancelled_chain["status"] == "CANCELLED"
    assert cancelled_chain["members"][1]["task_id"] is None
    assert first["status"] == "CANCELLED"
    assert again.status_code == 409


async def test_a_step_left_by_a_worker_that_died_is_submitted_by_the_reaper(
    start_apps: StartApps, namespace: str, store: TaskStore
) -> None:
    # No worker at first: the first link is written COMPLETE here, as by a worker that died
    # right after its terminal write and before submitting the next link.
    apps = start_apps(namespace, workers=0, env=FAST_REAPER)
    async with apps.client() as client:
        started = await start_workflow(
            client,
            {
                "kind": "chain",
                "tasks": [
                    {"task": "add", "payload": {"x": 5}},
                    {"task": "add", "payload": {"x": 1}},
                ],
            },
        )
        first = uuid.UUID(started["members"][0]["task_id"])
        await store.transition(first, TaskState.PROGRESS, start_delivery="gone/0/0")
        await store.transition(
            first, TaskState.COMPLETE, result=42, progress=Progress(percent=100), attempt=1
        )
        waiting = await workflow_of(client, started["id"])
        assert waiting["done"] == 1
        assert waiting["members"][1]["task_id"] is None
        apps.add_worker()
        done = await wait_workflow(client, started["id"], "COMPLETE", "FAILURE")
        second = await record_of(client, done["members"][1]["task_id"])
    assert done["status"] == "COMPLETE"
    assert done["result"] == 43
    assert second["payload"] == {"x": 1, "previous": 42, "seconds": 0}
    assert second["attempts"] == 1


async def test_an_idempotency_key_answers_the_first_workflow_and_refuses_another(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace, workers=0)
    group = {"kind": "group", "tasks": [{"task": "add", "payload": {"x": n}} for n in (1, 2)]}
    key = {"Idempotency-Key": "nightly-2026-11-30"}
    async with apps.client() as client:
        first = await client.post("/workflows", json=group, headers=key)
        again = await client.post("/workflows", json=group, headers=key)
        assert (first.status_code, again.status_code) == (202, 202), again.text
        assert again.headers["Location"] == first.headers["Location"]
        assert again.json()["members"] == first.json()["members"]
        other = await client.post("/workflows", json={**group, "kind": "chain"}, headers=key)
        assert other.status_code == 409, other.text
        assert f"workflow {first.json()['id']}" in other.json()["detail"]
        malformed = await client.post(
            "/workflows", json=group, headers={"Idempotency-Key": "two words"}
        )
        assert malformed.status_code == 422, malformed.text
        assert len(await tasks_named(client, "add")) == 2  # one per member, submitted once


async def test_invalid_workflows_are_refused_with_what_to_fix(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace, workers=0)
    async with apps.client() as client:
        no_callback = await client.post(
            "/workflows", json={"kind": "chord", "tasks": [{"task": "add"}]}
        )
        unknown = await client.post(
            "/workflows", json={"kind": "group", "tasks": [{"task": "nope"}]}
        )
        no_field = await client.post(
            "/workflows",
            json={"kind": "chain", "tasks": [{"task": "add"}, {"task": "noop"}]},
        )
        bad_payload = await client.post(
            "/workflows", json={"kind": "group", "tasks": [{"task": "add", "payload": {"x": "a"}}]}
        )
        empty = await client.post("/workflows", json={"kind": "group", "tasks": []})
        missing = await client.get(f"/workflows/{uuid.uuid4()}")
        listed = await client.get("/tasks")
    assert no_callback.status_code == 422
    assert no_callback.json()["detail"][0]["loc"] == ["body", "chord", "callback"]
    assert unknown.status_code == 404
    assert "unknown task 'nope'" in unknown.text
    assert no_field.status_code == 422
    assert "has no payload field 'previous'" in no_field.text
    assert bad_payload.status_code == 422
    assert empty.status_code == 422
    assert missing.status_code == 404
    assert listed.json()["items"] == []  # nothing of the refused workflows was submitted
