"""Consumer lag read from Kafka: the offsets KEDA's kafka scaler reads, per partition.

``lag`` is the real backlog: the log end offset minus the group's committed offset; for a
partition the group never committed, the whole retained log with ``earliest`` (what faust
does) and nothing with ``latest``. What KEDA makes of the same offsets (it counts an
uncommitted partition as its end offset, or as 1 under ``latest``) is ``scaling.py``'s job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.core.kafka_security import access_denied

T = TypeVar("T")


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    end_offset: int
    committed: int | None
    lag: int


async def topic_partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` that exists (a missing topic has none)."""
    described = await admin.describe_topics(topics)
    return sorted(
        TopicPartition(entry["topic"], partition["partition"])
        for entry in described
        if not entry.get("error_code")
        for partition in entry["partitions"]
    )


@dataclass(frozen=True)
class PartitionOffsets:
    begin: int
    """The first offset still in the log (earlier ones were deleted by retention)."""
    end: int
    """The offset the next message will get (the high watermark)."""
    committed: int | None
    """The group's committed offset, None if it never committed one."""


class OffsetReader:
    """Kafka clients kept open to read a group's offsets again and again (the reaper reads
    them every sweep; new clients each time would cost connections and metadata requests).

    ``security`` is ``kafka_security.client_options(settings)`` (plain text without it). The
    user needs Describe on the group and on the topics, nothing more (KEDA's own user has
    exactly that)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        request_timeout_ms: int = 10_000,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._timeout_ms = request_timeout_ms
        self._security = dict(security or {})
        self._clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None

    async def __aenter__(self) -> OffsetReader:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def partitions(self, topics: list[str]) -> list[TopicPartition]:
        admin, _ = await self._started()
        return await self._reset_on_error(topic_partitions(admin, topics))

    async def read(
        self, group: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, PartitionOffsets]:
        admin, consumer = await self._started()
        return await self._reset_on_error(self._read(admin, consumer, group, partitions))

    async def lag(
        self,
        group: str,
        topics: list[str],
        *,
        offset_reset: Literal["earliest", "latest"] = "earliest",
    ) -> list[PartitionLag]:
        """The group's lag per partition of ``topics`` (see the module's docstring)."""
        partitions = await self.partitions(topics)
        if not partitions:
            return []
        offsets = await self.read(group, partitions)
        rows = []
        for tp in partitions:
            read = offsets[tp]
            if read.committed is None:
                lag = read.end - read.begin if offset_reset == "earliest" else 0
            else:
                lag = max(read.end - read.committed, 0)
            rows.append(PartitionLag(tp.topic, tp.partition, read.end, read.committed, lag))
        return rows

    async def close(self) -> None:
        if self._clients is not None:
            admin, consumer = self._clients
            self._clients = None
            await consumer.stop()
            await admin.close()

    async def _read(
        self,
        admin: AIOKafkaAdminClient,
        consumer: AIOKafkaConsumer,
        group: str,
        partitions: list[TopicPartition],
    ) -> dict[TopicPartition, PartitionOffsets]:
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        ends = await consumer.end_offsets(partitions)
        begins = await consumer.beginning_offsets(partitions)
        offsets = {}
        for tp in partitions:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else None
            offsets[tp] = PartitionOffsets(begins[tp], ends[tp], offset)
        return offsets

    async def _started(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._clients is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                request_timeout_ms=self._timeout_ms,
                **self._security,
            )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                enable_auto_commit=False,
                request_timeout_ms=self._timeout_ms,
                **self._security,
            )
            try:
                await admin.start()
                await consumer.start()
            except BaseException:
                await consumer.stop()
                await admin.close()
                raise
            self._clients = (admin, consumer)
        return self._clients

    async def _reset_on_error(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except BaseException as error:
            await self.close()  # reconnect next time: the cluster may have changed under us
            denied = access_denied(
                error,
                user=self._security.get("sasl_plain_username"),
                operation="read consumer offsets (Describe on the group and its topics)",
            )
            if denied is not None:
                raise denied from error
            raise


async def group_lag(
    bootstrap_servers: str,
    group: str,
    topics: list[str],
    *,
    offset_reset: Literal["earliest", "latest"] = "earliest",
    security: Mapping[str, Any] | None = None,
) -> list[PartitionLag]:
    """One reading with clients of its own; ``OffsetReader`` keeps them for many."""
    async with OffsetReader(bootstrap_servers, security=security) as reader:
        return await reader.lag(group, topics, offset_reset=offset_reset)
