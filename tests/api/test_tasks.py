"""The walking skeleton over HTTP on the real stack: submit, follow, read."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.helpers import collapse, follow_events, submit


async def test_sleep_task_goes_pending_progress_complete(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/tasks", json={"task": "sleep", "payload": {"seconds": 1, "steps": 4}}
    )
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "PENDING"
    assert uuid.UUID(accepted["id"]).version == 4
    assert response.headers["location"] == f"/tasks/{accepted['id']}"

    records = await follow_events(client, accepted["id"])

    states = collapse([accepted["status"], *(r["status"] for r in records)])
    assert states == ["PENDING", "PROGRESS", "COMPLETE"]
    # The stream starts with the current record, which may still be the accepted one.
    versions = [r["version"] for r in records]
    assert versions == sorted(set(versions)), "versions must rise with every write"
    assert versions[0] >= accepted["version"]
    percents = [r["progress"]["percent"] for r in records if r["status"] == "PROGRESS"]
    assert percents == sorted(percents)
    final = records[-1]
    assert final["result"] == {"slept_seconds": 1.0}
    assert final["attempts"] == 1

    current = (await client.get(f"/tasks/{accepted['id']}")).json()
    assert current == final


async def test_failing_task_ends_in_failure_with_its_error(client: httpx.AsyncClient) -> None:
    accepted = await submit(client, "fail", {"message": "boom"})

    records = await follow_events(client, accepted["id"])

    # The task fails within milliseconds of its start: the stream begins with the record as
    # it is when the follower connects, which may already be the FAILURE.
    states = collapse([accepted["status"], *(r["status"] for r in records)])
    assert states in (["PENDING", "PROGRESS", "FAILURE"], ["PENDING", "FAILURE"])
    # Whether or not the follower saw it, the progress the task reported before raising is
    # in the final record: the task ran (PROGRESS) before it failed.
    assert records[-1]["progress"]["percent"] == 50
    assert records[-1]["progress"]["message"] == "about to fail"
    assert records[-1]["attempts"] == 1
    error = records[-1]["error"]
    assert error["type"] == "DemoTaskError"
    assert error["message"] == "boom"
    assert "DemoTaskError: boom" in error["traceback"]
    assert records[-1]["result"] is None


async def test_noop_returns_its_echo_and_polling_sees_it(client: httpx.AsyncClient) -> None:
    accepted = await submit(client, "noop", {"echo": "hello"})

    async def finished() -> dict[str, object]:
        while True:
            record: dict[str, object] = (await client.get(f"/tasks/{accepted['id']}")).json()
            if record["status"] == "COMPLETE":
                return record
            await asyncio.sleep(0.05)

    record = await asyncio.wait_for(finished(), timeout=30)
    assert record["result"] == "hello"
    assert record["created_at"] <= record["updated_at"]


async def test_many_tasks_of_every_kind_all_finish(client: httpx.AsyncClient) -> None:
    kinds = (
        [("noop", {"echo": str(i)}) for i in range(10)]
        + [("sleep", {"seconds": 0.2, "steps": 2}) for _ in range(5)]
        + [("fail", {}) for _ in range(3)]
    )
    accepted = [await submit(client, task, payload) for task, payload in kinds]

    finals = await asyncio.gather(*(follow_events(client, a["id"]) for a in accepted))

    outcomes = [records[-1]["status"] for records in finals]
    assert outcomes == ["COMPLETE"] * 15 + ["FAILURE"] * 3


async def test_unknown_id_is_404_and_malformed_id_is_422(api_client: httpx.AsyncClient) -> None:
    unknown = await api_client.get(f"/tasks/{uuid.uuid4()}")
    assert unknown.status_code == 404
    assert "no task with id" in unknown.json()["detail"]

    malformed = await api_client.get("/tasks/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["loc"] == ["path", "task_id"]


async def test_bad_submissions_are_4xx_and_store_nothing(api_client: httpx.AsyncClient) -> None:
    unknown_task = await api_client.post("/tasks", json={"task": "nope", "payload": {}})
    assert unknown_task.status_code == 404
    assert (
        "known tasks: add, fail, flaky, noop, overrun, sleep, sync_customer, tally"
        in (unknown_task.json()["detail"])
    )

    bad_payload = await api_client.post(
        "/tasks", json={"task": "sleep", "payload": {"seconds": -1}}
    )
    assert bad_payload.status_code == 422
    assert bad_payload.json()["detail"][0]["loc"] == ["body", "payload", "seconds"]

    missing_task = await api_client.post("/tasks", json={"payload": {}})
    assert missing_task.status_code == 422


async def test_catalog_lists_each_task_with_its_topic_and_schema(
    api_client: httpx.AsyncClient, namespace: str
) -> None:
    catalog = (await api_client.get("/catalog")).json()

    assert [entry["name"] for entry in catalog] == [
        "add",
        "fail",
        "flaky",
        "noop",
        "overrun",
        "sleep",
        "sync_customer",
        "tally",
    ]
    sleep = next(entry for entry in catalog if entry["name"] == "sleep")
    assert sleep["topic"] == f"{namespace}.tasks.sleep"
    assert sleep["payload_schema"]["properties"]["seconds"]["maximum"] == 3600


async def test_health_endpoints(api_client: httpx.AsyncClient) -> None:
    assert (await api_client.get("/healthz")).json() == {"status": "ok"}
    ready = await api_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": True, "kafka": True}


async def test_listing_filters_and_pages_through_recent_tasks(
    api_client: httpx.AsyncClient,
) -> None:
    ids = [(await submit(api_client, "noop", {"echo": str(i)}))["id"] for i in range(5)]
    await submit(api_client, "sleep", {"seconds": 1})

    first = (await api_client.get("/tasks", params={"task": "noop", "limit": 3})).json()
    rest = (
        await api_client.get(
            "/tasks", params={"task": "noop", "limit": 3, "cursor": first["next_cursor"]}
        )
    ).json()
    pending = (await api_client.get("/tasks", params={"state": "PENDING"})).json()
    unknown = await api_client.get("/tasks", params={"task": "nope"})
    bad_state = await api_client.get("/tasks", params={"state": "DONE"})

    assert [t["id"] for t in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next_cursor"] is None
    assert len(pending["items"]) == 6
    assert unknown.json() == {"items": [], "next_cursor": None}
    assert bad_state.status_code == 422
