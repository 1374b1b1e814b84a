"""Task states and the one table of allowed transitions.

The Redis script that writes states is generated from ``TRANSITIONS``, so the rule lives here
and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    PENDING = "PENDING"
    """Accepted by the API and queued on the task's topic; no worker has started it."""
    PROGRESS = "PROGRESS"
    """A worker is running it; carries percent, message and optional meta."""
    RETRY = "RETRY"
    """An attempt failed and another is scheduled; carries the error and when it is due."""
    COMPLETE = "COMPLETE"
    """Finished; the result is stored."""
    FAILURE = "FAILURE"
    """Failed for good; the error type, message and traceback are stored."""
    CANCELLED = "CANCELLED"
    """Cancelled by a client before it finished."""
    EXPIRED = "EXPIRED"
    """Not started before its ``expires_at``: it never ran, and never will."""

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[TaskState] = frozenset(
    {TaskState.COMPLETE, TaskState.FAILURE, TaskState.CANCELLED, TaskState.EXPIRED}
)

# From each state, the states a write may move a task to. Terminal states lead nowhere: a
# redelivered or duplicated message can never reopen a finished task.
# PENDING -> PENDING and RETRY -> RETRY hold a task back (a delay, its rate limit or its
# concurrency limit): its due time moves, its state does not. EXPIRED is reached only from
# states in which no attempt runs: an attempt that started runs to its end.
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset(
        {
            TaskState.PENDING,
            TaskState.EXPIRED,
            TaskState.PROGRESS,
            TaskState.RETRY,
            TaskState.COMPLETE,
            TaskState.FAILURE,
            TaskState.CANCELLED,
        }
    ),
    # PROGRESS -> PROGRESS is a progress report, or a redelivered message starting a new attempt.
    TaskState.PROGRESS: frozenset(
        {
            TaskState.PROGRESS,
            TaskState.RETRY,
            TaskState.COMPLETE,
            TaskState.FAILURE,
            TaskState.CANCELLED,
        }
    ),
    TaskState.RETRY: frozenset(
        {
            TaskState.RETRY,
            TaskState.EXPIRED,
            TaskState.PROGRESS,
            TaskState.FAILURE,
            TaskState.CANCELLED,
        }
    ),
    TaskState.COMPLETE: frozenset(),
    TaskState.FAILURE: frozenset(),
    TaskState.CANCELLED: frozenset(),
    TaskState.EXPIRED: frozenset(),
}


def can_transition(current: TaskState, new: TaskState) -> bool:
    return new in TRANSITIONS[current]
