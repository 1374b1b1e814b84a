"""What the async and sync clients share: configuration, response handling, the retry rule."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from services.client.errors import (
    ApiError,
    BadRequest,
    ServiceUnavailable,
    TaskCancelledError,
    TaskExpired,
    TaskFailed,
    TaskNotFound,
    Unauthorized,
    WorkflowFailed,
)
from services.core.models import TaskRecord
from services.core.priorities import Priority
from services.core.schedules import ScheduleStatus
from services.core.states import TaskState
from services.core.workflows import WorkflowRecord, WorkflowSpec, WorkflowState

URL_ENV = "KAFKA_TASKS_URL"
API_KEY_ENV = "KAFKA_TASKS_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    api_key: str | None
    timeout: float
    retries: int
    """How often a 503 or a connection error is retried (never a keyless submission)."""

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout: float,
        retries: int,
    ) -> ClientConfig:
        return cls(
            base_url=(base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/"),
            api_key=api_key or os.environ.get(API_KEY_ENV) or None,
            timeout=timeout,
            retries=retries,
        )

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential with full jitter, capped."""
    return random.uniform(0, min(0.2 * 2**attempt, 5.0))


RETRYABLE_ERRORS = (httpx.TransportError,)


def retryable_status(response: httpx.Response) -> bool:
    """503 (a backend is down), and, with Retry-After, 409 (the same Idempotency-Key's first
    request is still being settled) and 504 (a submission's fate was left unknown: sent again
    with its key, it is answered for sure)."""
    code = response.status_code
    return code == 503 or (code in (409, 504) and "retry-after" in response.headers)


def raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail: Any = response.json().get("detail")
    except ValueError:
        detail = response.text
    code = response.status_code
    if code == 401:
        raise Unauthorized(code, detail)
    if code == 404:
        raise TaskNotFound(code, detail)
    if code == 503:
        raise ServiceUnavailable(code, detail)
    if 400 <= code < 500:
        raise BadRequest(code, detail)
    raise ApiError(code, detail)


def unreachable(config: ClientConfig, error: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(0, f"cannot reach {config.base_url}: {error!r}")


def record_of(response: httpx.Response) -> TaskRecord:
    raise_for(response)
    return TaskRecord.model_validate(response.json())


def outcome(record: TaskRecord) -> TaskRecord:
    """The record of a COMPLETE task; raises for FAILURE and CANCELLED."""
    if record.status is TaskState.FAILURE:
        raise TaskFailed(record)
    if record.status is TaskState.CANCELLED:
        raise TaskCancelledError(record)
    if record.status is TaskState.EXPIRED:
        raise TaskExpired(record)
    return record


def workflow_of(response: httpx.Response) -> WorkflowRecord:
    raise_for(response)
    return WorkflowRecord.model_validate(response.json())


def workflow_outcome(record: WorkflowRecord) -> WorkflowRecord:
    """The record of a COMPLETE workflow; raises WorkflowFailed for FAILURE and CANCELLED."""
    if record.status in (WorkflowState.FAILURE, WorkflowState.CANCELLED):
        raise WorkflowFailed(record)
    return record


@dataclass(frozen=True)
class Options:
    """When and how a submission runs (Celery's apply_async options)."""

    countdown: float | None = None
    """Queue it this many seconds from now."""
    eta: datetime | None = None
    """Queue it at this (aware) time."""
    expires: datetime | float | None = None
    """Not started by this time (or this many seconds from now), it ends EXPIRED."""
    priority: Priority | None = None
    """high, default or low (tasks declared prioritized)."""

    def body(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.countdown is not None:
            fields["countdown"] = self.countdown
        if self.eta is not None:
            fields["eta"] = self.eta.isoformat()
        if isinstance(self.expires, datetime):
            fields["expires"] = self.expires.isoformat()
        elif self.expires is not None:
            fields["expires"] = self.expires
        if self.priority is not None:
            fields["priority"] = Priority(self.priority).value
        return fields


def submission(
    task: str, payload: dict[str, Any] | None, idempotency_key: str | None, options: Options
) -> dict[str, Any]:
    body = {"task": task, "payload": payload or {}, **options.body()}
    return {"json": body, "headers": _key_header(idempotency_key)}


def schedules_of(response: httpx.Response) -> list[ScheduleStatus]:
    raise_for(response)
    return [ScheduleStatus.model_validate(item) for item in response.json()["items"]]


BatchItem = tuple[str, dict[str, Any] | None]
"""One task of a batch: its name and payload."""


def batch_submission(items: list[BatchItem], idempotency_key: str | None) -> dict[str, Any]:
    tasks = [{"task": task, "payload": payload or {}} for task, payload in items]
    return {"json": {"tasks": tasks}, "headers": _key_header(idempotency_key)}


def workflow_submission(spec: WorkflowSpec, idempotency_key: str | None) -> dict[str, Any]:
    return {"json": spec.request_body(), "headers": _key_header(idempotency_key)}


def _key_header(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


def records_of(response: httpx.Response) -> list[TaskRecord]:
    raise_for(response)
    return [TaskRecord.model_validate(item) for item in response.json()["items"]]


def list_params(
    state: str | None, task: str | None, limit: int, cursor: str | None
) -> dict[str, str | int]:
    params: dict[str, str | int] = {"limit": limit}
    for name, value in (("state", state), ("task", task), ("cursor", cursor)):
        if value:
            params[name] = value
    return params
