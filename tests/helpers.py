"""Small helpers for tests that follow tasks over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from itertools import groupby
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import aconnect_sse

T = TypeVar("T")


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


async def eventually(
    probe: Callable[[], Awaitable[T]],
    condition: Callable[[T], bool],
    *,
    within: float = 60,
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until ``condition`` holds, for at most ``within`` seconds (a bounded wait
    for a real condition, never a blind sleep)."""
    async with asyncio.timeout(within):
        while True:
            value = await probe()
            if condition(value):
                return value
            await asyncio.sleep(interval)


async def record_of(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_status(
    client: httpx.AsyncClient, task_id: str, *statuses: str, within: float = 60
) -> dict[str, Any]:
    return await eventually(
        lambda: record_of(client, task_id), lambda r: r["status"] in statuses, within=within
    )


async def log_lines(path: str, task_id: str) -> list[dict[str, Any]]:
    """The JSON log lines of a service's log file that carry ``task_id``."""
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8", errors="replace")
    lines = []
    for line in text.splitlines():
        if task_id in line and line.startswith("{"):
            entry = json.loads(line)
            if entry.get("task_id") == task_id:
                lines.append(entry)
    return lines
