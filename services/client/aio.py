"""The async client."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from types import TracebackType
from typing import Any
from uuid import UUID

import httpx
from httpx_sse import SSEError, aconnect_sse

from services.client import _protocol as protocol
from services.client.errors import ServiceUnavailable, WaitTimeout
from services.core.models import TaskRecord
from services.core.priorities import Priority
from services.core.schedules import ScheduleStatus
from services.core.workflows import WorkflowRecord, WorkflowSpec

POLL_SECONDS = 0.5


class AsyncClient:
    """Submit and follow kafka-tasks tasks. Base URL and API key default to the
    ``KAFKA_TASKS_URL`` and ``KAFKA_TASKS_API_KEY`` environment variables."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = protocol.ClientConfig.resolve(
            base_url, api_key, timeout=timeout, retries=retries
        )
        self._http = http or httpx.AsyncClient(
            base_url=self.config.base_url, headers=self.config.headers(), timeout=timeout
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self,
        task: str,
        payload: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: datetime | float | None = None,
        priority: Priority | str | None = None,
    ) -> TaskRecord:
        """Submit a task; returns its PENDING record. Retried on 503 only with a key.

        ``countdown`` (seconds) or ``eta`` (an aware time) hold it back until then;
        ``expires`` (a time, or seconds from now) ends it EXPIRED if not started by then;
        ``priority``: high, default or low."""
        options = protocol.Options(
            countdown=countdown,
            eta=eta,
            expires=expires,
            priority=Priority(priority) if priority is not None else None,
        )
        request = protocol.submission(task, payload, idempotency_key, options)

        def send() -> Awaitable[httpx.Response]:
            return self._http.post("/tasks", **request)

        response = await (self._retrying(send) if idempotency_key else send())
        return protocol.record_of(response)

    async def submit_workflow(
        self, spec: WorkflowSpec, *, idempotency_key: str | None = None
    ) -> WorkflowRecord:
        """Submit a chain, group or chord (see ``services.client.canvas``); returns it
        RUNNING, its first steps submitted. Retried on 503 only with a key."""
        request = protocol.workflow_submission(spec, idempotency_key)

        def send() -> Awaitable[httpx.Response]:
            return self._http.post("/workflows", **request)

        return protocol.workflow_of(await (self._retrying(send) if idempotency_key else send()))

    async def get_workflow(self, workflow_id: UUID | str) -> WorkflowRecord:
        """Its status, progress (``done`` of ``total``), members and results."""
        return protocol.workflow_of(
            await self._retrying(lambda: self._http.get(f"/workflows/{workflow_id}"))
        )

    async def cancel_workflow(self, workflow_id: UUID | str) -> WorkflowRecord:
        """Cancel it: nothing more is submitted, its pending and running members are
        cancelled."""
        return protocol.workflow_of(
            await self._retrying(lambda: self._http.post(f"/workflows/{workflow_id}/cancel"))
        )

    async def wait_workflow(
        self,
        workflow_id: UUID | str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (the documented API, like wait)
    ) -> WorkflowRecord:
        """Wait until the workflow ends: its record if COMPLETE; WorkflowFailed (FAILURE or
        CANCELLED) or WaitTimeout otherwise. Polls ``GET /workflows/<id>``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = await self.get_workflow(workflow_id)
            if record.status.is_terminal:
                return protocol.workflow_outcome(record)
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(str(workflow_id), timeout or 0, None)
            await asyncio.sleep(POLL_SECONDS)

    async def schedules(self) -> builtins.list[ScheduleStatus]:
        """Every periodic schedule with its next and last run."""
        return protocol.schedules_of(await self._retrying(lambda: self._http.get("/schedules")))

    async def submit_many(
        self, items: builtins.list[protocol.BatchItem], *, idempotency_key: str | None = None
    ) -> builtins.list[TaskRecord]:
        """Submit (task, payload) pairs in one request, all or nothing (``POST /tasks/batch``);
        returns their PENDING records in order. Retried on 503 only with a key."""
        request = protocol.batch_submission(items, idempotency_key)

        def send() -> Awaitable[httpx.Response]:
            return self._http.post("/tasks/batch", **request)

        return protocol.records_of(await (self._retrying(send) if idempotency_key else send()))

    async def get(self, task_id: UUID | str) -> TaskRecord:
        return protocol.record_of(await self._retrying(lambda: self._http.get(f"/tasks/{task_id}")))

    async def cancel(self, task_id: UUID | str) -> TaskRecord:
        return protocol.record_of(
            await self._retrying(lambda: self._http.post(f"/tasks/{task_id}/cancel"))
        )

    async def list(
        self,
        *,
        state: str | None = None,
        task: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[builtins.list[TaskRecord], str | None]:
        params = protocol.list_params(state, task, limit, cursor)
        response = await self._retrying(lambda: self._http.get("/tasks", params=params))
        protocol.raise_for(response)
        body = response.json()
        return [TaskRecord.model_validate(item) for item in body["items"]], body["next_cursor"]

    async def events(self, task_id: UUID | str) -> AsyncIterator[TaskRecord]:
        """Every state the task moves through from now on (its current state first), ending
        at a terminal state."""
        async with aconnect_sse(self._http, "GET", f"/tasks/{task_id}/events") as source:
            if not source.response.is_success:
                await source.response.aread()
                protocol.raise_for(source.response)
            async for event in source.aiter_sse():
                if event.event == "state":
                    yield TaskRecord.model_validate_json(event.data)

    async def wait(self, task_id: UUID | str, *, timeout: float | None = None) -> TaskRecord:  # noqa: ASYNC109  (the documented API, like asyncio.wait_for)
        """Wait until the task finishes: its record if COMPLETE; TaskFailed, TaskCancelledError
        or WaitTimeout otherwise. Follows the SSE stream, polling if the stream breaks."""
        last: builtins.list[TaskRecord] = []
        try:
            async with asyncio.timeout(timeout):
                return protocol.outcome(await self._follow(task_id, last))
        except TimeoutError:
            raise WaitTimeout(str(task_id), timeout or 0, last[-1] if last else None) from None

    async def _follow(self, task_id: UUID | str, last: builtins.list[TaskRecord]) -> TaskRecord:
        try:
            async for record in self.events(task_id):
                last.append(record)
                if record.status.is_terminal:
                    return record
        except (httpx.TransportError, SSEError, ServiceUnavailable):
            # The stream broke (proxy, restart) or the API serves all the streams it may
            # (503): poll instead.
            pass
        while True:
            record = await self.get(task_id)
            last.append(record)
            if record.status.is_terminal:
                return record
            await asyncio.sleep(POLL_SECONDS)

    async def _retrying(self, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        deadline = time.monotonic() + self.config.timeout
        for attempt in range(1, self.config.retries + 2):
            final = attempt > self.config.retries or time.monotonic() > deadline
            try:
                response = await send()
            except protocol.RETRYABLE_ERRORS as error:
                if final:
                    raise protocol.unreachable(self.config, error) from error
            else:
                if final or not protocol.retryable_status(response):
                    return response
            await asyncio.sleep(protocol.backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover
