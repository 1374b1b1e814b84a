"""Declare the topics a namespace needs (task topics, retry, dead letter) when they are missing.

In Kubernetes the Strimzi topic operator owns topics (``declare_topics`` is off there); locally
and in tests the services create what is missing at startup.
"""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from services.core import topics
from services.core.catalog import Catalog
from services.core.settings import Settings


def topic_names(settings: Settings, catalog: Catalog) -> list[str]:
    names = [settings.task_topic(name) for name in catalog.names()]
    return [
        *names,
        topics.retry_topic(settings.namespace),
        topics.dead_letter_topic(settings.namespace),
    ]


async def ensure_topics(settings: Settings, catalog: Catalog) -> list[str]:
    """Create the namespace's missing topics; returns the names it created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topic_names(settings, catalog) if name not in existing]
        if missing:
            # Another process may declare them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(name, settings.topic_partitions, settings.topic_replication_factor)
                        for name in missing
                    ]
                )
        return missing
    finally:
        await admin.close()
