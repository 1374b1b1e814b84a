"""Publishes to Kafka and waits for the broker's acknowledgement (API and worker)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from pydantic import BaseModel

from services.core.errors import BackendUnavailableError
from services.core.kafka_security import access_denied, client_options
from services.core.settings import Settings

FATAL_TO_THE_PRODUCER = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
)
"""Errors after which an idempotent producer's state (its producer id and sequence numbers)
no longer matches the broker's: every later send fails the same way. Seen after a whole-
cluster outage (chaos seed 24680: a worker's producer answered OutOfOrderSequenceNumber for
minutes, until the end of the run). The producer is replaced; the next send starts afresh."""


class TaskPublisher:
    """An idempotent, acks=all producer. Starts lazily so the API can run while Kafka is down
    (it answers 503 and reports not-ready) and recovers on its own once Kafka is back."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure_started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap_servers,
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=self._settings.kafka_request_timeout_ms,
                    # No linger: at a moderate rate each message went alone anyway, 2 ms
                    # later (200 tasks/s: Kafka's part of a task's way 5.6 -> 2.7 ms p50).
                    # Under load, messages still batch while a request is in flight.
                    linger_ms=0,
                    **client_options(self._settings),
                )
                try:
                    await producer.start()
                except (KafkaError, OSError) as exc:
                    await producer.stop()
                    if isinstance(exc, KafkaError):
                        denied = access_denied(
                            exc,
                            user=self._settings.kafka_sasl_username,
                            operation="connect to Kafka",
                        )
                        if denied is not None:
                            raise denied from exc
                    raise BackendUnavailableError("kafka", str(exc) or type(exc).__name__) from exc
                self._producer = producer
            return self._producer

    async def publish(self, topic: str, message: BaseModel, *, key: str) -> str:
        """Send ``message`` as JSON; returns its position (``topic/partition/offset``) once the
        broker acknowledged it (acks=all), within ``kafka_request_timeout_ms`` in all."""
        timeout = self._settings.kafka_request_timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout):
                producer = await self._ensure_started()
                sent = await producer.send_and_wait(
                    topic, message.model_dump_json().encode(), key=key.encode()
                )
        except KafkaError as exc:
            await self._replace_if_fatal(exc)
            denied = access_denied(
                exc, user=self._settings.kafka_sasl_username, operation=f"write to topic {topic}"
            )
            if denied is not None:
                raise denied from exc
            raise BackendUnavailableError(
                "kafka", f"no acknowledgement from the broker ({type(exc).__name__})"
            ) from exc
        except TimeoutError as exc:
            raise BackendUnavailableError(
                "kafka", f"no acknowledgement from the broker ({type(exc).__name__})"
            ) from exc
        return f"{sent.topic}/{sent.partition}/{sent.offset}"

    async def publish_many(
        self, messages: list[tuple[str, BaseModel, str]]
    ) -> list[str | BackendUnavailableError]:
        """Send many (topic, message, key) as one producer batch; for each, its position once
        the broker acknowledged it, or the error that says it was not (all within
        ``kafka_request_timeout_ms``)."""
        timeout = self._settings.kafka_request_timeout_ms / 1000
        results: list[str | BackendUnavailableError] = [
            BackendUnavailableError("kafka", "no acknowledgement from the broker (TimeoutError)")
        ] * len(messages)
        try:
            async with asyncio.timeout(timeout):
                producer = await self._ensure_started()
                pending = [
                    await producer.send(topic, message.model_dump_json().encode(), key=key.encode())
                    for topic, message, key in messages
                ]
                for index, sent in enumerate(pending):
                    try:
                        meta = await sent
                    except KafkaError as exc:
                        await self._replace_if_fatal(exc)
                        results[index] = BackendUnavailableError(
                            "kafka", f"no acknowledgement from the broker ({type(exc).__name__})"
                        )
                    else:
                        results[index] = f"{meta.topic}/{meta.partition}/{meta.offset}"
        except (KafkaError, TimeoutError, BackendUnavailableError):
            pass  # what was not acknowledged by now keeps its error
        return results

    async def ready(self) -> bool:
        """Whether a broker answers a metadata request now (cached metadata proves nothing)."""
        try:
            producer = await self._ensure_started()
            cluster = await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=3)
        except (BackendUnavailableError, KafkaError, TimeoutError, OSError):
            return False
        return bool(cluster.brokers())

    async def _replace_if_fatal(self, error: KafkaError) -> None:
        if not isinstance(error, FATAL_TO_THE_PRODUCER):
            return
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
