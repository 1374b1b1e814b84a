"""Periodic schedules: definitions, tick arithmetic, and exactly-once firing on the real stack
with two schedulers, one of them SIGKILLed while it leads."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from devstack import processes
from services.core.catalog import Catalog, TaskContext
from services.core.models import utcnow
from services.core.policy import schedules
from services.core.schedules import Schedule
from services.core.settings import Settings
from services.tasks import catalog
from tests.conftest import StartApps
from tests.helpers import eventually


class Report(BaseModel):
    team: str = "ops"


def test_a_schedule_declared_next_to_its_task_is_named_checked_and_found() -> None:
    local = Catalog()

    @local.task(
        schedule=[
            Schedule(cron="0 9 * * mon-fri", timezone="Europe/Paris", payload={"team": "sales"}),
            Schedule(every_seconds=300),
        ]
    )
    async def report(payload: Report, ctx: TaskContext) -> None:
        return None

    found = schedules(local, Settings())
    assert [(s.key, s.task, s.rule) for s in found] == [
        ("report", "report", "cron 0 9 * * mon-fri (Europe/Paris)"),
        ("report-1", "report", "every 300 s"),
    ]
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    monday_winter = datetime(2026, 1, 5, 6, tzinfo=UTC)
    assert found[0].next_after(monday_winter) == datetime(2026, 1, 5, 8, tzinfo=UTC)
    monday_summer = datetime(2026, 7, 6, 6, tzinfo=UTC)
    assert found[0].next_after(monday_summer) == datetime(2026, 7, 6, 7, tzinfo=UTC)
    friday_evening = datetime(2026, 1, 9, 18, tzinfo=UTC)
    assert found[0].next_after(friday_evening) == datetime(2026, 1, 12, 8, tzinfo=UTC)
    # Interval ticks are multiples of the interval since the epoch: every leader agrees.
    assert found[1].next_after(datetime(2026, 1, 5, 6, 2, 1, tzinfo=UTC)) == datetime(
        2026, 1, 5, 6, 5, tzinfo=UTC
    )
    tick = datetime(2026, 1, 5, 6, 5, tzinfo=UTC)
    assert found[1].idempotency_key(tick) == "schedule:report-1:2026-01-05T06:05:00+00:00"


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        ({"cron": "61 * * * *"}, "cron expression '61 * * * *' is not valid"),
        ({"every_seconds": 5, "cron": "* * * * *"}, "exactly one of cron and every_seconds"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
    ],
)
def test_a_wrong_schedule_is_refused_with_what_to_fix(
    definition: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words.replace("*", r"\*")):
        Schedule(task="noop", **definition)


def test_schedules_in_settings_are_checked_against_the_catalog() -> None:
    wrong = [
        ([{"every_seconds": 5}], "names no task"),
        ([{"task": "nope", "every_seconds": 5}], "unknown task 'nope'"),
        ([{"task": "noop", "every_seconds": 5, "payload": {"echo": 3}}], "echo"),
        (
            [{"name": "a", "task": "noop", "every_seconds": 5}] * 2,
            "schedule name 'a' is used twice",
        ),
        ([{"task": "fail", "every_seconds": 5, "priority": "high"}], "prioritized=True"),
    ]
    for entries, words in wrong:
        settings = Settings(schedules=[Schedule.model_validate(e) for e in entries])
        with pytest.raises(Exception, match=words):
            schedules(catalog, settings)


async def test_with_two_schedulers_and_the_leader_sigkilled_every_tick_fires_exactly_once(
    start_apps: StartApps, namespace: str
) -> None:
    lease = 3.0
    env = {
        "KT_SCHEDULES": json.dumps(
            [{"name": "beat", "task": "noop", "every_seconds": 1, "payload": {"echo": "beat"}}]
        ),
        "KT_SCHEDULER_LEASE_SECONDS": str(lease),
        "KT_SCHEDULER_INTERVAL_SECONDS": "0.2",
    }
    apps = start_apps(namespace, workers=2, env=env)

    async def page(client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.get("/schedules")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def liveness(worker: Any) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{worker.url}/healthz", timeout=5).json()
        return body

    async with apps.client() as client:
        first = await eventually(
            lambda: page(client), lambda p: p["items"][0]["last_run_at"] is not None, within=30
        )
        leader = next(w for w in apps.workers if liveness(w)["scheduler"]["leading"])
        survivor = next(w for w in apps.workers if w is not leader)
        assert first["leader"] == liveness(leader)["scheduler"]["token"]
        # A few ticks under the first leader, then it dies without a word.
        await eventually(
            lambda: page(client),
            lambda p: (
                datetime.fromisoformat(p["items"][0]["last_run_at"])
                >= datetime.fromisoformat(first["items"][0]["last_run_at"]) + timedelta(seconds=3)
            ),
            within=30,
        )
        killed_at = utcnow()
        processes.kill(leader.pid)
        # The survivor takes over within a lease and catches up the ticks of the gap.
        taken = await eventually(
            lambda: page(client),
            lambda p: p["leader"] == liveness(survivor)["scheduler"]["token"],
            within=lease + 5,
        )
        took_over_in = (utcnow() - killed_at).total_seconds()
        assert taken["leader"] != first["leader"]
        await eventually(
            lambda: page(client),
            lambda p: (
                datetime.fromisoformat(p["items"][0]["last_run_at"])
                >= killed_at + timedelta(seconds=lease + 4)
            ),
            within=30,
        )
        response = await client.get("/tasks", params={"task": "noop", "limit": 500})
        records = response.json()["items"]

    ticks = [datetime.fromisoformat(r["schedule"]["tick"]) for r in records if r["schedule"]]
    assert all(r["schedule"]["name"] == "beat" for r in records)
    per_tick = Counter(ticks)
    assert max(per_tick.values()) == 1, (
        f"ticks fired twice: {[t for t, n in per_tick.items() if n > 1]}"
    )
    ordered = sorted(ticks)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert set(gaps) == {timedelta(seconds=1)}, (
        f"ticks missing between {ordered[0]} and {ordered[-1]}"
    )
    assert (
        ordered[0]
        < killed_at - timedelta(seconds=2)
        < killed_at + timedelta(seconds=lease + 3)
        < ordered[-1]
    )
    print(f"{len(ticks)} ticks, each once; the survivor led {took_over_in:.1f} s after the SIGKILL")
