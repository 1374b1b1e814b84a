"""The one naming rule for Kafka topics, the worker's consumer group and Redis keys.

Everything is scoped by a *namespace* (setting ``namespace``), so that stacks, tests and
developers can share one Kafka cluster and one Redis without seeing each other's tasks.
"""

from __future__ import annotations

from typing import Final

WORKER_APP_VERSION: Final = 1
"""faust's app ``version``; raising it makes the workers a new consumer group (faust appends
``-v<version>`` to the app id when the version is above 1)."""


def task_topic(namespace: str, task_name: str) -> str:
    """Each task name gets its own topic, like the proof of concept's task_1 / task_2."""
    return f"{namespace}.tasks.{task_name}"


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
