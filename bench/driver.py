"""The load driver: one asyncio process, aiohttp, the same code for both systems.

Submissions go over HTTP exactly as a client would send them. Completion is *observed* in the
systems' own stores instead of by polling ``GET /tasks/<id>`` for every task: a poller would
compete for the same two cores as the systems under test and round every latency up to its
polling interval. Each system records when a task finished (kafka-tasks: the terminal
record's ``updated_at``; Celery: the result's ``date_done``), on the same machine clock as the
driver, so end-to-end latency is ``finished - intended submit time`` with no polling error.
The driver reads those records in pipelined batches every ``POLL_SECONDS`` only to know when
to stop waiting. A sample of the finished tasks is also fetched through ``GET /tasks/<id>`` to
prove the API reports what the store says.

Open-loop latency is measured from the *intended* send time of each task, so a driver or a
server that falls behind shows up as latency (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from redis.asyncio import Redis

from bench.stats import percentile
from services.core.keys import RedisKeys

POLL_SECONDS = 0.5
"""How often the store is read for finished tasks. Latency does not depend on it (finish times
come from the records); a faster poll would load Redis and the driver in proportion to the
backlog, i.e. slow down most the system that is already behind."""
TERMINAL_OK = "COMPLETE"
Progress = Callable[[int, int], None]
"""``(done, total)``: the caller draws a progress bar from it."""


class Observer(Protocol):
    async def finished(self, ids: list[str]) -> dict[str, tuple[str, float]]:
        """For the ids that reached a terminal state: (state, finished at, epoch seconds)."""
        ...

    async def close(self) -> None: ...


def _epoch(text: str) -> float:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # Celery stores naive UTC in some configurations
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class KafkaTasksObserver:
    """Reads ``status`` and ``updated_at`` of kafka-tasks records and events (their key names
    from services/core/keys.py)."""

    TERMINAL = frozenset({"COMPLETE", "FAILURE", "CANCELLED"})

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.redis = Redis.from_url(redis_url)
        self.keys = RedisKeys(namespace)

    async def finished(self, ids: list[str]) -> dict[str, tuple[str, float]]:
        done: dict[str, tuple[str, float]] = {}
        for chunk in _chunks(ids, 1000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for task_id in chunk:
                    pipe.hmget(self.keys.record(task_id), "status", "updated_at")
                replies = await pipe.execute()
            for task_id, (status, updated) in zip(chunk, replies, strict=True):
                if status is not None and status.decode() in self.TERMINAL:
                    done[task_id] = (status.decode(), _epoch(json.loads(updated)))
        return done

    async def history(self, ids: list[str]) -> dict[str, dict[str, float]]:
        """Per task, when each state was first written: PENDING is the record's creation,
        every later state an entry of its events stream."""
        out: dict[str, dict[str, float]] = {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hget(self.keys.record(task_id), "created_at")
                pipe.xrange(self.keys.events(task_id))
            replies = await pipe.execute()
        for task_id, created, entries in zip(ids, replies[::2], replies[1::2], strict=True):
            first: dict[str, float] = {}
            if created is not None:
                first["PENDING"] = _epoch(json.loads(created))
            for _, fields in entries:
                status = fields[b"status"].decode()
                first.setdefault(status, _epoch(json.loads(fields[b"updated_at"])))
            out[task_id] = first
        return out

    async def close(self) -> None:
        await self.redis.aclose()


async def phases(result: RunResult, observer: KafkaTasksObserver, sample: int = 500) -> None:
    """Split kafka-tasks' end-to-end latency into its phases, from the records' own history:
    accept (intended send -> PENDING stored), queue (PENDING -> a worker's PROGRESS: publish,
    Kafka, fetch, dispatch) and run (PROGRESS -> COMPLETE: the task and its final write)."""
    done = [s for s in result.accepted if s.task_id in result.finished]
    chosen = random.sample(done, min(sample, len(done)))
    history = await observer.history([s.task_id for s in chosen if s.task_id])
    spans: dict[str, list[float]] = {"accept": [], "queue": [], "run": []}
    for sub in chosen:
        states = history.get(sub.task_id or "", {})
        if {"PENDING", "PROGRESS", "COMPLETE"} <= states.keys():
            spans["accept"].append((states["PENDING"] - sub.intended) * 1000)
            spans["queue"].append((states["PROGRESS"] - states["PENDING"]) * 1000)
            spans["run"].append((states["COMPLETE"] - states["PROGRESS"]) * 1000)
    result.phases = {
        name: {"p50_ms": percentile(values, 0.5), "p99_ms": percentile(values, 0.99)}
        for name, values in spans.items()
    }


class CeleryObserver:
    """Reads Celery's result meta (``celery-task-meta-<id>``: status, date_done)."""

    TERMINAL = {"SUCCESS": "COMPLETE", "FAILURE": "FAILURE", "REVOKED": "CANCELLED"}

    def __init__(self, redis_url: str) -> None:
        self.redis = Redis.from_url(redis_url)

    async def finished(self, ids: list[str]) -> dict[str, tuple[str, float]]:
        done: dict[str, tuple[str, float]] = {}
        for chunk in _chunks(ids, 1000):
            values = await self.redis.mget([f"celery-task-meta-{task_id}" for task_id in chunk])
            for task_id, raw in zip(chunk, values, strict=True):
                if raw is None:
                    continue
                meta = json.loads(raw)
                state = self.TERMINAL.get(meta.get("status", ""))
                if state is not None:
                    done[task_id] = (state, _epoch(meta["date_done"]))
        return done

    async def close(self) -> None:
        await self.redis.aclose()


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Target:
    """A system under test: its API base URLs (spread round-robin) and its observer."""

    name: str
    urls: list[str]
    observer: Observer | None
    api_key: str | None = None
    pids: dict[str, int] = field(default_factory=dict)
    """Processes whose CPU time the reports attribute to this system (name -> pid)."""


@dataclass
class Submitted:
    task_id: str | None
    intended: float
    """Wall-clock time the task was meant to be sent (epoch seconds)."""
    sent: float
    acked: float
    status: int
    error: str = ""


@dataclass
class RunResult:
    system: str
    scenario: str
    submitted: list[Submitted] = field(default_factory=list)
    finished: dict[str, tuple[str, float]] = field(default_factory=dict)
    started: float = 0.0
    submit_done: float = 0.0
    deadline_missed: int = 0
    api_checked: int = 0
    api_mismatches: int = 0
    phases: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def accepted(self) -> list[Submitted]:
        return [s for s in self.submitted if s.task_id is not None]

    @property
    def submit_rate(self) -> float:
        span = self.submit_done - self.started
        return len(self.accepted) / span if span > 0 else math.nan

    @property
    def completion_rate(self) -> float:
        """Tasks finished OK per second, from the first intended send to the last finish."""
        ok = [at for state, at in self.finished.values() if state == TERMINAL_OK]
        if not ok:
            return math.nan
        span = max(ok) - self.started
        return len(ok) / span if span > 0 else math.nan

    @property
    def complete_seconds(self) -> float:
        """From the first intended send to the last finish."""
        ok = [at for state, at in self.finished.values() if state == TERMINAL_OK]
        return max(ok) - self.started if ok else math.nan

    @property
    def latencies_ms(self) -> list[float]:
        out = []
        for sub in self.accepted:
            assert sub.task_id is not None
            state_at = self.finished.get(sub.task_id)
            if state_at is not None and state_at[0] == TERMINAL_OK:
                out.append((state_at[1] - sub.intended) * 1000.0)
        return out

    @property
    def refused_by_status(self) -> dict[str, int]:
        """Refused submissions by HTTP status (0: no answer: timeout or connection error)."""
        counts: dict[str, int] = {}
        for sub in self.submitted:
            if sub.task_id is None:
                counts[str(sub.status)] = counts.get(str(sub.status), 0) + 1
        return counts

    @property
    def failures(self) -> int:
        """Refused submissions + tasks that ended in another state + tasks that never ended."""
        refused = len(self.submitted) - len(self.accepted)
        bad = sum(1 for state, _ in self.finished.values() if state != TERMINAL_OK)
        return refused + bad + self.deadline_missed

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "system": self.system,
            "scenario": self.scenario,
            "submitted": len(self.submitted),
            "accepted": len(self.accepted),
            "completed": len(lat),
            "failures": self.failures,
            "never_finished": self.deadline_missed,
            "refused_by_status": self.refused_by_status,
            "submit_rate": self.submit_rate,
            "completion_rate": self.completion_rate,
            "submit_seconds": self.submit_done - self.started,
            "complete_seconds": self.complete_seconds,
            "p50_ms": percentile(lat, 0.50),
            "p95_ms": percentile(lat, 0.95),
            "p99_ms": percentile(lat, 0.99),
            "max_ms": max(lat) if lat else math.nan,
            "submit_p99_ms": percentile([(s.acked - s.sent) * 1000 for s in self.accepted], 0.99),
            "api_checked": self.api_checked,
            "api_mismatches": self.api_mismatches,
            "phases": self.phases,
        }


class Driver:
    """One aiohttp session per target, keep-alive connections, round-robin over its URLs."""

    def __init__(self, target: Target, *, connections: int) -> None:
        self.target = target
        headers = {"content-type": "application/json"}
        if target.api_key:
            headers["X-API-Key"] = target.api_key
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=30),
        )
        self._urls = itertools.cycle(target.urls)

    async def close(self) -> None:
        await self.session.close()

    async def submit(self, body: bytes, intended: float) -> Submitted:
        url = next(self._urls) + "/tasks"
        sent = time.time()
        try:
            async with self.session.post(url, data=body) as response:
                payload = await response.read()
                acked = time.time()
                if response.status != 202:
                    return Submitted(
                        None, intended, sent, acked, response.status, payload[:200].decode()
                    )
                return Submitted(json.loads(payload)["id"], intended, sent, acked, 202)
        except (aiohttp.ClientError, TimeoutError) as error:
            return Submitted(None, intended, sent, time.time(), 0, repr(error))

    async def submit_batch(self, body: bytes, count: int, intended: float) -> list[Submitted]:
        """One ``POST /tasks/batch`` of ``count`` tasks (kafka-tasks only)."""
        url = next(self._urls) + "/tasks/batch"
        sent = time.time()
        try:
            async with self.session.post(url, data=body) as response:
                payload = await response.read()
                acked = time.time()
                if response.status != 202:
                    error = payload[:200].decode()
                    return [Submitted(None, intended, sent, acked, response.status, error)] * count
                return [
                    Submitted(item["id"], intended, sent, acked, 202)
                    for item in json.loads(payload)["items"]
                ]
        except (aiohttp.ClientError, TimeoutError) as error:
            return [Submitted(None, intended, sent, time.time(), 0, repr(error))] * count

    async def api_status(self, task_id: str) -> str:
        async with self.session.get(f"{next(self._urls)}/tasks/{task_id}") as response:
            return str((await response.json())["status"])


def task_body(task: str, payload: dict[str, Any]) -> bytes:
    return json.dumps({"task": task, "payload": payload}).encode()


async def ceiling(url: str, *, seconds: float, connections: int, body: bytes) -> float:
    """Requests per second the driver manages against the trivial server (bench.trivial)."""
    driver = Driver(Target("trivial", [url], None), connections=connections)
    count = 0
    stop_at = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            result = await driver.submit(body, time.time())
            if result.status == 202:
                count += 1

    start = time.monotonic()
    try:
        await asyncio.gather(*(loop() for _ in range(connections)))
    finally:
        await driver.close()
    return count / (time.monotonic() - start)


async def _await_finished(
    result: RunResult,
    observer: Observer,
    *,
    settle_seconds: float,
    progress: Progress | None,
    producing: asyncio.Future[None] | None = None,
) -> None:
    """Poll the store until every accepted task is terminal, or ``settle_seconds`` after the
    last submission; what is still open then counts as never finished."""
    deadline: float | None = None
    while True:
        outstanding = [s.task_id for s in result.accepted if s.task_id not in result.finished]
        ids = [task_id for task_id in outstanding if task_id is not None]
        if ids:
            result.finished.update(await observer.finished(ids))
        if progress:
            progress(len(result.finished), max(len(result.submitted), 1))
        still_producing = producing is not None and not producing.done()
        if not still_producing:
            if deadline is None:
                deadline = time.monotonic() + settle_seconds
            if len(result.finished) >= len(result.accepted):
                return
            if time.monotonic() > deadline:
                result.deadline_missed = len(result.accepted) - len(result.finished)
                await _drain(ids, observer)
                return
        await asyncio.sleep(POLL_SECONDS)


async def _drain(ids: list[str], observer: Observer, *, limit_seconds: float = 120.0) -> None:
    """Let late tasks finish (uncounted) so they do not load the next scenario's system."""
    give_up = time.monotonic() + limit_seconds
    while ids and time.monotonic() < give_up:
        done = await observer.finished(ids)
        ids = [task_id for task_id in ids if task_id not in done]
        await asyncio.sleep(0.5)


async def _check_via_api(driver: Driver, result: RunResult, sample: int = 20) -> None:
    ids = [tid for tid, (state, _) in result.finished.items() if state == TERMINAL_OK]
    for task_id in random.sample(ids, min(sample, len(ids))):
        result.api_checked += 1
        if await driver.api_status(task_id) != TERMINAL_OK:
            result.api_mismatches += 1


async def burst(
    target: Target,
    *,
    count: int,
    task: str,
    payload: dict[str, Any],
    connections: int,
    settle_seconds: float,
    submit_progress: Progress | None = None,
    finish_progress: Progress | None = None,
    after_submit: Callable[[], Awaitable[None]] | None = None,
) -> RunResult:
    """Submit ``count`` tasks as fast as ``connections`` keep-alive connections allow, then
    wait for all of them (``after_submit`` runs in between, e.g. to start workers)."""
    assert target.observer is not None
    driver = Driver(target, connections=connections)
    result = RunResult(target.name, f"burst {task}")
    body = task_body(task, payload)
    remaining = iter(range(count))

    async def sender() -> None:
        for _ in remaining:
            result.submitted.append(await driver.submit(body, time.time()))
            if submit_progress:
                submit_progress(len(result.submitted), count)

    try:
        result.started = time.time()
        await asyncio.gather(*(sender() for _ in range(connections)))
        result.submit_done = time.time()
        if after_submit is not None:
            await after_submit()
        await _await_finished(
            result, target.observer, settle_seconds=settle_seconds, progress=finish_progress
        )
        await _check_via_api(driver, result)
    finally:
        await driver.close()
    return result


async def fanout(
    target: Target,
    *,
    count: int,
    batch: int,
    task: str,
    payload: dict[str, Any],
    connections: int,
    settle_seconds: float,
    submit_progress: Progress | None = None,
    finish_progress: Progress | None = None,
) -> RunResult:
    """Submit ``count`` tasks in ``POST /tasks/batch`` requests of ``batch`` (``connections``
    requests at once), then wait for all of them."""
    assert target.observer is not None
    driver = Driver(target, connections=connections)
    result = RunResult(target.name, f"fan-out {count} {task} in batches of {batch}")
    sizes = [batch] * (count // batch) + ([count % batch] if count % batch else [])
    remaining = iter(sizes)

    async def sender() -> None:
        for size in remaining:
            body = json.dumps({"tasks": [{"task": task, "payload": payload}] * size}).encode()
            result.submitted += await driver.submit_batch(body, size, time.time())
            if submit_progress:
                submit_progress(len(result.submitted), count)

    try:
        result.started = time.time()
        await asyncio.gather(*(sender() for _ in range(connections)))
        result.submit_done = time.time()
        await _await_finished(
            result, target.observer, settle_seconds=settle_seconds, progress=finish_progress
        )
        await _check_via_api(driver, result)
    finally:
        await driver.close()
    return result


async def open_loop(
    target: Target,
    *,
    rate: float,
    seconds: float,
    task: str,
    payload: dict[str, Any],
    connections: int,
    settle_seconds: float,
    progress: Progress | None = None,
) -> RunResult:
    """Send ``rate`` tasks per second for ``seconds``, on schedule whatever the answers."""
    assert target.observer is not None
    driver = Driver(target, connections=connections)
    result = RunResult(target.name, f"open loop {task} @{rate:g}/s")
    body = task_body(task, payload)
    total = int(rate * seconds)
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()

    async def send(intended: float) -> None:
        result.submitted.append(await driver.submit(body, intended))

    async def schedule() -> None:
        start_loop = loop.time()
        for index in range(total):
            due = start_loop + index / rate
            delay = due - loop.time()
            if delay > 0:
                # The schedule itself is the condition being waited for: send at time ``due``.
                await asyncio.sleep(delay)
            job = asyncio.create_task(send(result.started + index / rate))
            in_flight.add(job)
            job.add_done_callback(in_flight.discard)
        while in_flight:
            await asyncio.wait(set(in_flight))
        result.submit_done = time.time()

    try:
        result.started = time.time()
        producing = asyncio.ensure_future(schedule())
        await _await_finished(
            result,
            target.observer,
            settle_seconds=settle_seconds,
            progress=lambda done, _: progress(done, total) if progress else None,
            producing=producing,
        )
        await producing
        await _check_via_api(driver, result)
        if isinstance(target.observer, KafkaTasksObserver):
            await phases(result, target.observer)
    finally:
        await driver.close()
    return result
