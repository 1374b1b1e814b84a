"""What the async and sync clients share: configuration, response handling, the retry rule."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import httpx

from services.client.errors import (
    ApiError,
    BadRequest,
    ServiceUnavailable,
    TaskCancelledError,
    TaskFailed,
    TaskNotFound,
    Unauthorized,
)
from services.core.models import TaskRecord
from services.core.states import TaskState

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
    return record


def submission(
    task: str, payload: dict[str, Any] | None, idempotency_key: str | None
) -> dict[str, Any]:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return {"json": {"task": task, "payload": payload or {}}, "headers": headers}


BatchItem = tuple[str, dict[str, Any] | None]
"""One task of a batch: its name and payload."""


def batch_submission(items: list[BatchItem], idempotency_key: str | None) -> dict[str, Any]:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    tasks = [{"task": task, "payload": payload or {}} for task, payload in items]
    return {"json": {"tasks": tasks}, "headers": headers}


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
