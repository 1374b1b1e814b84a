"""Rate limits across workers and per-key concurrency limits, on the real stack."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from datetime import datetime

import httpx
import pytest

from services.core.catalog import Catalog, TaskContext
from services.core.limits import ConcurrencyLimit, RateLimit
from services.core.states import TaskState
from services.core.store import TaskStore
from services.tasks.demo import SyncCustomerPayload
from tests.conftest import StartApps
from tests.helpers import submit, wait_status


@pytest.mark.parametrize(
    ("text", "per_second"), [("10/s", 10.0), ("100/m", 100 / 60), ("5/h", 5 / 3600), ("2.5", 2.5)]
)
def test_rate_limits_read_celerys_notation(text: str, per_second: float) -> None:
    limit = RateLimit.parse(text)
    assert limit.count / limit.period_seconds == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["", "0/s", "ten/s", "10/d", "-1/m"])
def test_a_rate_limit_that_is_not_understood_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="'10/s', '100/m', '5/h'"):
        RateLimit.parse(text)


def test_a_concurrency_key_must_name_a_payload_field() -> None:
    with pytest.raises(ValueError, match="concurrency key 'client' is not a field"):

        @Catalog().task(concurrency=ConcurrencyLimit(key="client"))
        async def sync(payload: SyncCustomerPayload, ctx: TaskContext) -> None:
            return None


async def starts(store: TaskStore, ids: list[str]) -> list[tuple[str, datetime, datetime]]:
    """(id, first start, end) of each task, from its history."""
    found = []
    for task_id in ids:
        history = await store.history(uuid.UUID(task_id))
        start = next(r.updated_at for r in history if r.status is TaskState.PROGRESS)
        found.append((task_id, start, history[-1].updated_at))
    return found


async def test_a_rate_limit_of_10_per_second_holds_across_three_workers(
    start_apps: StartApps, namespace: str, store: TaskStore
) -> None:
    apps = start_apps(namespace, workers=3, env={"KT_RATE_LIMITS": json.dumps({"noop": "10/s"})})
    count = 80
    async with apps.client() as client:
        catalog = (await client.get("/catalog")).json()
        assert next(e for e in catalog if e["name"] == "noop")["rate_limit"] == "10/s"
        accepted = await asyncio.gather(*(submit(client, "noop", {}) for _ in range(count)))
        ids = [task["id"] for task in accepted]
        for task_id in ids:
            await wait_status(client, task_id, "COMPLETE", within=60)
    times = sorted(start for _, start, _ in await starts(store, ids))
    span = (times[-1] - times[0]).total_seconds()
    rate = (len(times) - 1) / span
    busiest = max(sum(1 for t in times if 0 <= (t - first).total_seconds() < 1) for first in times)
    print(f"{count} starts over {span:.2f} s: {rate:.2f}/s; at most {busiest} in any 1 s window")
    assert abs(rate - 10) <= 1, f"{rate:.2f} starts per second"
    assert busiest <= 11, f"{busiest} starts within one second"
    held = [r for r in await store.history(uuid.UUID(ids[-1])) if r.held_by]
    assert held
    assert held[0].held_by == "rate_limit"


async def test_a_concurrency_key_runs_one_task_per_customer_at_a_time_and_wakes_the_next(
    start_apps: StartApps, namespace: str, store: TaskStore
) -> None:
    apps = start_apps(namespace, workers=2)
    async with apps.client() as client:
        same = [
            await submit(client, "sync_customer", {"customer": "acme", "seconds": 0.5})
            for _ in range(4)
        ]
        other = [
            await submit(client, "sync_customer", {"customer": f"other-{i}", "seconds": 0.5})
            for i in range(2)
        ]
        waiting = await _held(client, [t["id"] for t in same])
        for task in same + other:
            await wait_status(client, task["id"], "COMPLETE", within=60)
    runs = sorted((start, end) for _, start, end in await starts(store, [t["id"] for t in same]))
    for (_, end), (start, _) in itertools.pairwise(runs):
        assert start >= end, "two syncs of the same customer ran at once"
    others = await starts(store, [t["id"] for t in other])
    assert any(start < runs[0][1] for _, start, _ in others), "other customers waited for acme"
    # Held back with the lease as a fallback, each waiter was woken by the end of the one
    # before it, long before that fallback.
    assert waiting["held_by"] == "concurrency"
    woken = next(s for i, s, _ in await starts(store, [waiting["id"]]))
    assert woken < datetime.fromisoformat(waiting["due_at"])


async def _held(client: httpx.AsyncClient, ids: list[str]) -> dict[str, object]:
    """The first of ``ids`` seen held back by its concurrency limit."""
    async with asyncio.timeout(30):
        while True:
            for task_id in ids:
                record = (await client.get(f"/tasks/{task_id}")).json()
                if record["held_by"] == "concurrency" and record["status"] == "PENDING":
                    return dict(record)
            await asyncio.sleep(0.05)
