"""The publisher on the real broker: an idempotent producer that lost its sequence is replaced."""

from __future__ import annotations

from aiokafka.errors import OutOfOrderSequenceNumber

from services.core.kafka_topics import ensure_topics
from services.core.models import TaskMessage
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.tasks import catalog


async def test_a_producer_out_of_sequence_is_replaced_and_the_next_send_lands(
    settings: Settings,
) -> None:
    # After a whole-cluster outage an idempotent producer can answer OutOfOrderSequenceNumber
    # to every send (chaos seed 24680). The broker's answer cannot be provoked on demand here;
    # the error is handed to the publisher as its send would raise it.
    await ensure_topics(settings, catalog)
    publisher = TaskPublisher(settings)
    topic = settings.task_topic("noop")
    message = TaskMessage(id="6f1d8e4c-0000-4000-8000-000000000001", task="noop", payload={})
    try:
        await publisher.publish(topic, message, key="k")
        broken = publisher._producer
        await publisher._replace_if_fatal(OutOfOrderSequenceNumber())
        position = await publisher.publish(topic, message, key="k")
        assert publisher._producer is not None
        assert publisher._producer is not broken
        assert position.startswith(f"{topic}/")
    finally:
        await publisher.stop()
