"""`make demo`: submit a handful of tasks to the local API and watch them live."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

DEMO_TASKS: list[tuple[str, dict[str, Any]]] = [
    ("sleep", {"seconds": 4, "steps": 8}),
    ("sleep", {"seconds": 6, "steps": 12}),
    ("sleep", {"seconds": 8, "steps": 16}),
    ("noop", {"echo": "hello from kafka-tasks"}),
    ("fail", {"message": "this one fails on purpose"}),
]
STYLE = {"PENDING": "yellow", "PROGRESS": "cyan", "COMPLETE": "green", "FAILURE": "red"}


def render(records: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="kafka-tasks demo: PENDING → PROGRESS → COMPLETE / FAILURE")
    for column in ("task id", "task", "state", "progress", "detail"):
        table.add_column(column)
    for record in records.values():
        progress = record.get("progress") or {}
        percent = float(progress.get("percent", 0))
        state = record["status"]
        if state == "COMPLETE":
            detail = f"result: {json.dumps(record['result'])}"
        elif state == "FAILURE":
            detail = f"{record['error']['type']}: {record['error']['message']}"
        else:
            detail = progress.get("message", "")
        table.add_row(
            record["id"][:8],
            record["task"],
            f"[{STYLE.get(state, 'white')}]{state}[/]",
            ProgressBar(total=100, completed=percent, width=24),
            detail,
        )
    return table


async def follow(
    client: httpx.AsyncClient, task_id: str, records: dict[str, dict[str, Any]]
) -> None:
    async with aconnect_sse(client, "GET", f"/tasks/{task_id}/events") as source:
        async for event in source.aiter_sse():
            if event.event == "state":
                records[task_id] = json.loads(event.data)


async def main(base_url: str) -> int:
    console = Console()
    records: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for task, payload in DEMO_TASKS:
            response = await client.post("/tasks", json={"task": task, "payload": payload})
            response.raise_for_status()
            record = response.json()
            records[record["id"]] = record
        with Live(render(records), console=console, refresh_per_second=8) as live:
            followers = [asyncio.create_task(follow(client, i, records)) for i in list(records)]
            while not all(f.done() for f in followers):
                live.update(render(records))
                await asyncio.sleep(0.1)
            live.update(render(records))
            await asyncio.gather(*followers)
    console.print()
    counts = Counter(r["status"] for r in records.values())
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    console.print(f"{len(records)} tasks in {time.monotonic() - started:.1f}s: {summary}")
    console.print(f"Look one up: curl {base_url}/tasks/{next(iter(records))}")
    expected = Counter({"COMPLETE": 4, "FAILURE": 1})
    return 0 if counts == expected else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(os.environ.get("KT_API_URL", "http://127.0.0.1:8000"))))
