"""Bad input gets a clear 4xx and changes nothing; Idempotency-Key repeats safely."""

from __future__ import annotations

import json

import httpx

from services.core.redis_client import RedisClient


async def stored_keys(redis: RedisClient, namespace: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"{namespace}:*")]


async def test_every_kind_of_bad_submission_is_a_clear_4xx_that_stores_nothing(
    api_client: httpx.AsyncClient, redis_client: RedisClient, namespace: str
) -> None:
    json_headers = {"content-type": "application/json"}
    cases = {
        "malformed JSON": (
            await api_client.post("/tasks", content=b"{", headers=json_headers),
            422,
        ),
        "not an object": (await api_client.post("/tasks", json=[1, 2]), 422),
        "unknown field": (await api_client.post("/tasks", json={"task": "noop", "x": 1}), 422),
        "unknown task": (await api_client.post("/tasks", json={"task": "nope"}), 404),
        "invalid payload": (
            await api_client.post("/tasks", json={"task": "sleep", "payload": {"steps": 0}}),
            422,
        ),
        "misspelt payload field": (
            await api_client.post("/tasks", json={"task": "sleep", "payload": {"second": 5}}),
            422,
        ),
        "wrong content type": (
            await api_client.post(
                "/tasks", content=b"task=noop", headers={"content-type": "text/plain"}
            ),
            415,
        ),
        "no content type": (await api_client.post("/tasks", content=b'{"task":"noop"}'), 415),
        "payload too large": (
            await api_client.post(
                "/tasks", json={"task": "noop", "payload": {"echo": "x" * 300_000}}
            ),
            413,
        ),
        "payload over its own limit": (
            await api_client.post(
                "/tasks", json={"task": "noop", "payload": {"blob": "x" * 262_200}}
            ),
            413,
        ),
        "bad idempotency key": (
            await api_client.post(
                "/tasks", json={"task": "noop"}, headers={"Idempotency-Key": "has space"}
            ),
            422,
        ),
    }
    for name, (response, expected) in cases.items():
        assert response.status_code == expected, (name, response.text)
        detail = response.json()["detail"]
        assert detail, f"{name}: the error must say what to fix"
    assert await stored_keys(redis_client, namespace) == []


async def test_a_payload_field_the_model_lacks_is_refused_by_name(
    api_client: httpx.AsyncClient,
) -> None:
    # Dropped silently, a misspelt field would leave the task to run with its default.
    response = await api_client.post(
        "/tasks", json={"task": "sleep", "payload": {"second": 5, "steps": 2}}
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", "payload", "second"], "extra_forbidden")


async def test_the_stored_payload_is_what_the_model_outputs(
    api_client: httpx.AsyncClient,
) -> None:
    # What the task receives, defaults filled in: the record, the message and the task agree.
    response = await api_client.post("/tasks", json={"task": "sleep", "payload": {"seconds": 1}})
    assert response.status_code == 202, response.text
    assert response.json()["payload"] == {"seconds": 1.0, "steps": 10}


async def test_a_streamed_body_over_the_limit_is_413(api_client: httpx.AsyncClient) -> None:
    async def body():  # type: ignore[no-untyped-def]  # an async generator, no Content-Length
        for _ in range(40):
            yield b"x" * 10_000

    response = await api_client.post(
        "/tasks", content=body(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


async def test_an_idempotency_key_returns_the_first_task_and_refuses_a_different_request(
    api_client: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": "order-42"}
    first = await api_client.post(
        "/tasks", json={"task": "noop", "payload": {"echo": "a"}}, headers=key
    )
    again = await api_client.post(
        "/tasks", json={"task": "noop", "payload": {"echo": "a"}}, headers=key
    )
    other = await api_client.post(
        "/tasks", json={"task": "noop", "payload": {"echo": "b"}}, headers=key
    )

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert other.status_code == 409
    assert first.json()["id"] in other.json()["detail"]


async def test_unknown_query_parameters_and_wrong_methods_are_explained(
    api_client: httpx.AsyncClient,
) -> None:
    typo = await api_client.get("/tasks", params={"stat": "FAILURE"})
    wrong_method = await api_client.request("DELETE", "/tasks")
    bad_time = await api_client.get("/tasks", params={"since": "1700000000"})

    assert typo.status_code == 422
    assert "unknown query parameter(s) stat" in typo.json()["detail"]
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET, POST"
    assert bad_time.status_code == 422
    assert "ISO 8601" in json.dumps(bad_time.json())
