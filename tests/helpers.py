"""Small helpers for tests that follow tasks over HTTP."""

from __future__ import annotations

import json
from itertools import groupby
from typing import Any

import httpx
from httpx_sse import aconnect_sse


async def follow_events(client: httpx.AsyncClient, task_id: str) -> list[dict[str, Any]]:
    """Every record the SSE stream sends until the task is terminal (the stream then ends)."""
    records = []
    async with aconnect_sse(client, "GET", f"/tasks/{task_id}/events") as source:
        assert source.response.status_code == 200
        async for event in source.aiter_sse():
            if event.event == "state":
                records.append(json.loads(event.data))
    return records


def collapse(states: list[str]) -> list[str]:
    """PENDING, PROGRESS, PROGRESS, COMPLETE -> PENDING, PROGRESS, COMPLETE."""
    return [state for state, _ in groupby(states)]


async def submit(
    client: httpx.AsyncClient, task: str, payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/tasks", json={"task": task, "payload": payload or {}})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body
