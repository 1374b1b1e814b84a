"""A typed Python client for the kafka-tasks API, async and sync.

async with AsyncClient("https://tasks.example.com", api_key=...) as tasks:
    record = await tasks.submit("resize", {"url": ...}, idempotency_key=order_id)
    done = await tasks.wait(record.id, timeout=60)
"""

from services.client.aio import AsyncClient
from services.client.errors import (
    ApiError,
    BadRequest,
    ClientError,
    ServiceUnavailable,
    TaskCancelledError,
    TaskExpired,
    TaskFailed,
    TaskNotFound,
    Unauthorized,
    WaitTimeout,
)
from services.client.sync import Client
from services.core.models import TaskRecord
from services.core.priorities import Priority
from services.core.schedules import ScheduleStatus
from services.core.states import TaskState

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClientError",
    "Priority",
    "ScheduleStatus",
    "ServiceUnavailable",
    "TaskCancelledError",
    "TaskExpired",
    "TaskFailed",
    "TaskNotFound",
    "TaskRecord",
    "TaskState",
    "Unauthorized",
    "WaitTimeout",
]
