"""Fails PENDING tasks whose message was never published (the API died between storing the
record and the broker's acknowledgement), so none stays PENDING forever."""

from __future__ import annotations

from services.core import metrics
from services.core.errors import InvalidTransitionError, TaskNotFoundError
from services.core.logs import get_logger
from services.core.models import TaskError
from services.core.states import TaskState
from services.core.store import TaskStore

log = get_logger(__name__)

LOST = TaskError(
    type="PublicationLost",
    message=(
        "the API stored this task but its message never reached Kafka (the API stopped before "
        "the broker acknowledged it); submit it again"
    ),
)


async def fail_unpublished(store: TaskStore) -> int:
    """Fail every overdue unconfirmed task; returns how many were failed."""
    failed = 0
    for task_id in await store.unconfirmed_overdue():
        try:
            record = await store.transition(task_id, TaskState.FAILURE, error=LOST)
        except (InvalidTransitionError, TaskNotFoundError):
            await store.forget_unconfirmed(task_id)
            continue
        failed += 1
        metrics.TASKS_FAILED.labels(record.task).inc()
        log.warning("task failed: its message was never published", task_id=str(task_id))
    return failed
