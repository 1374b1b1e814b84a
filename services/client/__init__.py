"""A typed Python client for the kafka-tasks API, async and sync.

async with AsyncClient("https://tasks.example.com", api_key=...) as tasks:
    record = await tasks.submit("resize", {"url": ...}, idempotency_key=order_id)
    done = await tasks.wait(record.id, timeout=60)
    flow = await tasks.submit_workflow(chord(group(sig("add", {"x": i}) for i in range(3)),
                                             sig("tally")))
    finished = await tasks.wait_workflow(flow.id, timeout=60)
"""

from services.client.aio import AsyncClient
from services.client.canvas import chain, chord, group, sig
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
    WorkflowFailed,
)
from services.client.sync import Client
from services.core.models import TaskRecord
from services.core.priorities import Priority
from services.core.schedules import ScheduleStatus
from services.core.states import TaskState
from services.core.workflows import WorkflowRecord, WorkflowSpec, WorkflowState

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
    "WorkflowFailed",
    "WorkflowRecord",
    "WorkflowSpec",
    "WorkflowState",
    "chain",
    "chord",
    "group",
    "sig",
]
