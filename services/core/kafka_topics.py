"""Declare the topics a namespace needs (task topics, retry, dead letter) when they are missing.

In Kubernetes the Strimzi topic operator owns topics (``declare_topics`` is off there); locally
and in tests the services create what is missing at startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from services.core import policy, topics
from services.core.catalog import Catalog
from services.core.kafka_security import client_options, verify_credentials
from services.core.logs import get_logger
from services.core.settings import Settings

log = get_logger(__name__)


def topic_names(settings: Settings, catalog: Catalog) -> list[str]:
    names = policy.all_task_topics(catalog, settings)
    return [
        *names,
        topics.retry_topic(settings.namespace),
        topics.dead_letter_topic(settings.namespace),
    ]


async def ensure_topics(settings: Settings, catalog: Catalog) -> list[str]:
    """Create the namespace's missing topics; returns the names it created, once the cluster's
    metadata shows every topic. A consumer that subscribes before that gets no partitions of
    the topics it cannot see yet (until its next metadata refresh): a worker started right
    after creating its topics would sit idle."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        **client_options(settings),
    )
    await admin.start()
    try:
        names = topic_names(settings, catalog)
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            # Another process may declare them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(name, settings.topic_partitions, settings.topic_replication_factor)
                        for name in missing
                    ]
                )
            async with asyncio.timeout(settings.kafka_request_timeout_ms / 1000):
                for pause in itertools.repeat(0.1):  # polling: Kafka has no notification
                    if await _all_visible(admin, missing):
                        break
                    await asyncio.sleep(pause)
        return missing
    finally:
        await admin.close()


async def wait_for_kafka(settings: Settings, catalog: Catalog) -> None:
    """Before a worker starts: wait out a Kafka that does not answer yet (a worker started
    during an outage waits for it instead of exiting), and declare the topics when they are
    ours to declare. A Kafka that answers but refuses the login is no outage: that raises
    ConfigurationError."""
    delay = 0.5
    while True:
        try:
            if settings.declare_topics:
                await ensure_topics(settings, catalog)
            else:
                await _answers(settings)
            return
        except (KafkaError, OSError, TimeoutError) as error:
            await verify_credentials(settings)
            log.warning(
                "kafka unavailable; waiting for it before starting",
                error=str(error) or type(error).__name__,
                in_seconds=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _answers(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        **client_options(settings),
    )
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()


async def _all_visible(admin: AIOKafkaAdminClient, names: list[str]) -> bool:
    described = await admin.describe_topics(names)
    return len(described) == len(names) and all(
        not entry.get("error_code") and entry["partitions"] for entry in described
    )
