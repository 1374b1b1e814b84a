"""What the client raises.

ClientError
├── TaskFailed             the task ended FAILURE (remote error type, message, traceback)
├── TaskCancelledError     the task ended CANCELLED
├── TaskExpired            the task ended EXPIRED (not started before its expiry)
├── WorkflowFailed         the workflow ended FAILURE (the failed member named) or CANCELLED
├── WaitTimeout            the task (or workflow) did not finish within the wait
└── ApiError               the API said no (status code and detail)
    ├── BadRequest         4xx for the request itself (422, 413, 415, 409 ...)
    ├── TaskNotFound       404
    ├── Unauthorized       401
    └── ServiceUnavailable 503 or no connection, after the retries
"""

from __future__ import annotations

from services.core.models import TaskRecord
from services.core.workflows import WorkflowRecord


class ClientError(Exception):
    """Root of everything the kafka-tasks client raises."""


class TaskFailed(ClientError):
    def __init__(self, record: TaskRecord) -> None:
        error = record.error
        self.record = record
        self.error_type = error.type if error else "unknown"
        self.remote_message = error.message if error else ""
        self.remote_traceback = error.traceback if error else None
        super().__init__(f"task {record.id} failed: {self.error_type}: {self.remote_message}")


class TaskCancelledError(ClientError):
    def __init__(self, record: TaskRecord) -> None:
        self.record = record
        super().__init__(f"task {record.id} was cancelled")


class TaskExpired(ClientError):
    def __init__(self, record: TaskRecord) -> None:
        self.record = record
        super().__init__(f"task {record.id} expired at {record.expires_at} before it started")


class WorkflowFailed(ClientError):
    def __init__(self, record: WorkflowRecord) -> None:
        self.record = record
        failed = record.failed
        where = f" at step {failed.step} ({failed.status})" if failed else ""
        super().__init__(f"workflow {record.id} ended {record.status}{where}")


class WaitTimeout(ClientError):
    def __init__(self, task_id: str, seconds: float, last: TaskRecord | None) -> None:
        self.task_id = task_id
        self.last = last
        state = last.status if last else "unknown"
        super().__init__(f"task {task_id} not finished after {seconds:g} s (last state {state})")


class ApiError(ClientError):
    def __init__(self, status_code: int, detail: object) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"{status_code}: {_readable(detail)}")


def _readable(detail: object) -> str:
    """FastAPI's validation errors as `field.path: message` lines; anything else as is."""
    if isinstance(detail, list) and all(isinstance(e, dict) and "msg" in e for e in detail):
        lines = []
        for entry in detail:
            location = ".".join(str(part) for part in entry.get("loc", []) if part != "body")
            lines.append(f"{location}: {entry['msg']}" if location else str(entry["msg"]))
        return "; ".join(lines)
    return str(detail)


class BadRequest(ApiError):
    pass


class TaskNotFound(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class ServiceUnavailable(ApiError):
    pass
