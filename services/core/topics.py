"""The one naming rule for Kafka topics, the worker's consumer group and Redis keys.

Everything is scoped by a *namespace* (setting ``namespace``), so that stacks, tests and
developers can share one Kafka cluster and one Redis without seeing each other's tasks.
"""

from __future__ import annotations

from typing import Final

WORKER_APP_VERSION: Final = 1
"""faust's app ``version``; raising it makes the workers a new consumer group (faust appends
``-v<version>`` to the app id when the version is above 1)."""


PRIORITIES: Final = ("high", "default", "low")
"""The values of ``services.core.priorities.Priority``, kept here free of imports (infra)."""


def task_topic(namespace: str, task_name: str, priority: str = "default") -> str:
    """Each task name gets its own topic, like the proof of concept's task_1 / task_2; a
    prioritised task one more per other priority (``<topic>.high``, ``<topic>.low``)."""
    base = f"{namespace}.tasks.{task_name}"
    return base if priority == "default" else f"{base}.{priority}"


def task_topics(namespace: str, task_name: str, *, prioritized: bool) -> list[str]:
    """Every topic of a task: high, default, low for a prioritised one, else the default."""
    if not prioritized:
        return [task_topic(namespace, task_name)]
    return [task_topic(namespace, task_name, priority) for priority in PRIORITIES]


def retry_topic(namespace: str) -> str:
    return f"{namespace}.retry"


def dead_letter_topic(namespace: str) -> str:
    return f"{namespace}.dead-letter"


def worker_app_id(namespace: str) -> str:
    """The id given to the worker's faust ``App``."""
    return f"{namespace}-worker"


def consumer_group(namespace: str, version: int = WORKER_APP_VERSION) -> str:
    """The Kafka consumer group the workers join: faust's app id after its version rule.

    KEDA's ScaledObject must read the lag of exactly this group; a test checks the rule against
    faust itself.
    """
    app_id = worker_app_id(namespace)
    return f"{app_id}-v{version}" if version > 1 else app_id


def redrive_group(namespace: str) -> str:
    """The consumer group re-drive reads the dead-letter topic with (its own: each dead
    letter is re-driven once, whatever the workers do)."""
    return f"{namespace}-redrive"


def redis_key_prefix(namespace: str) -> str:
    return f"{namespace}:"
