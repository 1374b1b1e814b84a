"""The steady workload: a seeded mix of submissions, repeated submissions and cancellations
sent to both API processes, every request and its answer recorded as an ``Op``."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

TASK_MIX: dict[str, int] = {"noop": 30, "sleep": 20, "flaky": 12, "fail": 8, "overrun": 5}
"""Relative weights of the task types submitted."""

DELAYED_SHARE = 0.3
"""Share of ``noop`` submissions sent with a countdown (held in Redis until due)."""
REPEAT_SHARE = 0.08
"""Share of requests that repeat an earlier submission with the same Idempotency-Key."""
CANCEL_SHARE = 0.12
"""Share of requests that cancel a task (mostly a recent ``sleep``: running or queued)."""

Failure = Literal["refused", "no-answer"]


@dataclass
class Op:
    number: int
    kind: Literal["submit", "cancel"]
    api: str
    sent_at: float
    """Seconds since the run started."""
    task: str | None = None
    payload: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    """Submission options besides the payload (a countdown)."""
    key: str | None = None
    """The submission's Idempotency-Key: every submission has one, so that anything it left
    in Redis can be traced back to it."""
    repeat_of: int | None = None
    target: str | None = None
    """The task id a cancellation is for."""
    answered_at: float | None = None
    status: int | None = None
    failure: Failure | None = None
    """refused: the API process was not there (nothing reached it); no-answer: the
    connection broke or the answer never came."""
    task_id: str | None = None
    """From a 202 (or a 504, which names the task it could not settle)."""

    @property
    def seconds(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.sent_at


@dataclass
class Workload:
    rng: random.Random
    urls: dict[str, str]
    clock: Callable[[], float]
    rate: float
    """Requests per second, all APIs together."""
    answer_timeout: float
    ops: list[Op] = field(default_factory=list)
    _clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    _pending: set[asyncio.Task[None]] = field(default_factory=set)
    _accepted: list[Op] = field(default_factory=list)
    _originals: list[Op] = field(default_factory=list)

    async def __aenter__(self) -> Workload:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        for name, url in self.urls.items():
            self._clients[name] = httpx.AsyncClient(
                base_url=url, timeout=self.answer_timeout, limits=limits
            )
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.drain()
        for client in self._clients.values():
            await client.aclose()

    async def run(self, until: float) -> None:
        """Send requests at ``rate`` per second (Poisson arrivals) until ``until``."""
        apis = sorted(self._clients)
        turn = 0
        while (now := self.clock()) < until:
            await asyncio.sleep(min(self.rng.expovariate(self.rate), until - now))
            turn += 1
            self._send(self._next(apis[turn % len(apis)]))

    def burst(self, api: str, count: int) -> None:
        """``count`` submissions to one API at once (its process is about to be killed)."""
        for _ in range(count):
            self._send(self._submission(api))

    async def drain(self) -> None:
        """Wait for every request in flight to be answered or to give up."""
        while self._pending:
            await asyncio.wait(set(self._pending))

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _next(self, api: str) -> Op:
        roll = self.rng.random()
        if roll < CANCEL_SHARE and self._accepted:
            return self._cancellation(api, self._accepted)
        if roll < CANCEL_SHARE + REPEAT_SHARE and self._originals:
            first = self.rng.choice(self._originals)
            return self._op(
                "submit",
                api,
                task=first.task,
                payload=first.payload,
                options=first.options,
                key=first.key,
                repeat_of=first.number,
            )
        return self._submission(api)

    def _submission(self, api: str) -> Op:
        task = self.rng.choices(list(TASK_MIX), weights=list(TASK_MIX.values()))[0]
        number = len(self.ops)
        payload: dict[str, Any]
        options: dict[str, Any] | None = None
        if task == "noop":
            payload = {"echo": f"op-{number}"}
            if self.rng.random() < DELAYED_SHARE:
                options = {"countdown": round(self.rng.uniform(0.5, 8.0), 2)}
        elif task == "sleep":
            payload = {"seconds": round(self.rng.uniform(0.5, 3.0), 2)}
            payload["steps"] = self.rng.randint(2, 6)
        elif task == "flaky":
            payload = {"fail_times": self.rng.choice([1, 2])}
        elif task == "fail":
            payload = {"message": f"op-{number}"}
        else:
            payload = {"overrun_attempts": 1, "seconds": 2.0}
        op = self._op(
            "submit", api, task=task, payload=payload, options=options, key=f"chaos-op-{number}"
        )
        self._originals.append(op)
        return op

    def _cancellation(self, api: str, accepted: list[Op]) -> Op:
        recent = [
            op for op in accepted[-200:] if op.task == "sleep" and self.clock() - op.sent_at < 10
        ]
        pool = recent if recent and self.rng.random() < 0.7 else accepted
        return self._op("cancel", api, target=self.rng.choice(pool).task_id)

    def _op(self, kind: Literal["submit", "cancel"], api: str, **fields: Any) -> Op:
        op = Op(len(self.ops), kind, api, self.clock(), **fields)
        self.ops.append(op)
        return op

    def _send(self, op: Op) -> None:
        task = asyncio.create_task(self._request(op))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _request(self, op: Op) -> None:
        client = self._clients[op.api]
        try:
            if op.kind == "submit":
                response = await client.post(
                    "/tasks",
                    json={"task": op.task, "payload": op.payload, **(op.options or {})},
                    headers={"Idempotency-Key": op.key or ""},
                )
            else:
                response = await client.post(f"/tasks/{op.target}/cancel")
        except httpx.ConnectError:
            op.failure = "refused"
        except httpx.HTTPError:  # cut mid-request, or no answer in time
            op.failure = "no-answer"
        else:
            op.status = response.status_code
            if op.kind == "submit" and response.status_code in (202, 504):
                location = response.headers.get("location", "")
                op.task_id = location.rsplit("/", 1)[-1] or None
            if op.kind == "submit" and response.status_code == 202:
                self._accepted.append(op)
        op.answered_at = self.clock()
