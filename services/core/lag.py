"""Consumer lag read from Kafka: the offsets KEDA's kafka scaler reads, per partition.

``lag`` is the real backlog: the log end offset minus the group's committed offset; for a
partition the group never committed, the whole retained log with ``earliest`` (what faust
does) and nothing with ``latest``. What KEDA makes of the same offsets (it counts an
uncommitted partition as its end offset, or as 1 under ``latest``) is ``scaling.py``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


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


class LagReader:
    """An admin client and a consumer kept open for repeated readings (``group_lag`` opens and
    closes them for one); use as an async context manager."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False
        )

    async def __aenter__(self) -> LagReader:
        await self._admin.start()
        try:
            await self._consumer.start()
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._consumer.stop()
        finally:
            await self._admin.close()

    async def read(
        self,
        group: str,
        topics: list[str],
        *,
        offset_reset: Literal["earliest", "latest"] = "earliest",
    ) -> list[PartitionLag]:
        partitions = await topic_partitions(self._admin, topics)
        if not partitions:
            return []
        committed = await self._admin.list_consumer_group_offsets(group, partitions=partitions)
        ends = await self._consumer.end_offsets(partitions)
        begins = await self._consumer.beginning_offsets(partitions)
        rows = []
        for tp in partitions:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else None
            if offset is None:
                lag = ends[tp] - begins[tp] if offset_reset == "earliest" else 0
            else:
                lag = max(ends[tp] - offset, 0)
            rows.append(PartitionLag(tp.topic, tp.partition, ends[tp], offset, lag))
        return rows


async def group_lag(
    bootstrap_servers: str,
    group: str,
    topics: list[str],
    *,
    offset_reset: Literal["earliest", "latest"] = "earliest",
) -> list[PartitionLag]:
    async with LagReader(bootstrap_servers) as reader:
        return await reader.read(group, topics, offset_reset=offset_reset)
