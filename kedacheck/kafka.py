"""Put a Kafka into a known state for a check: topics, messages, a group's committed offsets.

Only what a consumer group's lag depends on is set: log end offsets (messages produced), log
start offsets (records deleted, as retention does) and committed offsets (committed as the
group, the way a worker commits). Message contents do not matter to the lag; nothing here
consumes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import TopicAlreadyExistsError

from kedacheck.errors import KedaCheckError

TOPIC_SETTLE_SECONDS = 30.0


class LagSetter:
    """An admin client and a producer on ``bootstrap``; use as an async context manager."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)

    async def __aenter__(self) -> LagSetter:
        await self._admin.start()
        try:
            await self._producer.start()
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()
        await self._admin.close()

    async def fresh_topics(self, partitions: Mapping[str, int]) -> None:
        """Delete ``partitions``' topics if they exist (with every group's offsets on them)
        and create them empty with the given partition counts."""
        await self.delete_topics(list(partitions))
        async with asyncio.timeout(TOPIC_SETTLE_SECONDS):
            pending = dict(partitions)
            while pending:
                response = await self._admin.create_topics(
                    [
                        NewTopic(t, num_partitions=n, replication_factor=1)
                        for t, n in pending.items()
                    ]
                )
                for topic, code, *message in response.topic_errors:
                    if code == 0:
                        pending.pop(topic)
                    elif code != TopicAlreadyExistsError.errno:  # else: still being deleted
                        raise KedaCheckError(f"cannot create topic {topic}: {code} {message}")
                if pending:
                    await asyncio.sleep(0.2)
        await self._wait_for_leaders(partitions)

    async def delete_topics(self, topics: Sequence[str]) -> None:
        existing = set(await self._admin.list_topics())
        doomed = [topic for topic in topics if topic in existing]
        if doomed:
            await self._admin.delete_topics(doomed)

    async def _wait_for_leaders(self, partitions: Mapping[str, int]) -> None:
        async with asyncio.timeout(TOPIC_SETTLE_SECONDS):
            while True:
                described = await self._admin.describe_topics(list(partitions))
                ready = {
                    entry["topic"]: sum(1 for p in entry["partitions"] if p["leader"] >= 0)
                    for entry in described
                    if not entry.get("error_code")
                }
                if all(ready.get(t) == count for t, count in partitions.items()):
                    return
                await asyncio.sleep(0.2)

    async def produce(self, topic: str, per_partition: Sequence[int]) -> None:
        """``per_partition[p]`` messages onto partition ``p`` (acknowledged before returning)."""
        sends = [
            await self._producer.send(topic, b"lag", partition=partition)
            for partition, count in enumerate(per_partition)
            for _ in range(count)
        ]
        await asyncio.gather(*sends)

    async def end_offsets(self, topic: str, partitions: int) -> list[int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            ends = await consumer.end_offsets(tps)
            return [ends[tp] for tp in tps]
        finally:
            await consumer.stop()

    async def commit(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit ``offsets`` as ``group`` (a standalone member: the group must be empty)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = {TopicPartition(topic, p): offset for (topic, p), offset in offsets.items()}
            consumer.assign(list(tps))
            await consumer.commit(tps)
        finally:
            await consumer.stop()

    async def leave_lag(self, group: str, topic: str, lags: Sequence[int]) -> None:
        """Commit ``group`` on ``topic`` so that partition ``p`` has ``lags[p]`` left."""
        ends = await self.end_offsets(topic, len(lags))
        if any(lag > end for lag, end in zip(lags, ends, strict=True)):
            raise KedaCheckError(f"{topic} holds {ends} messages, fewer than the lag {list(lags)}")
        await self.commit(
            group,
            {(topic, p): end - lag for p, (lag, end) in enumerate(zip(lags, ends, strict=True))},
        )

    async def delete_before(self, topic: str, offsets: Sequence[int]) -> None:
        """Delete partition ``p``'s records below ``offsets[p]`` (what retention does)."""
        await self._admin.delete_records(
            {TopicPartition(topic, p): RecordsToDelete(offset) for p, offset in enumerate(offsets)}
        )


def spread(total: int, partitions: int) -> list[int]:
    """``total`` split as evenly as possible over ``partitions`` (the first ones get more)."""
    base, extra = divmod(total, partitions)
    return [base + (1 if p < extra else 0) for p in range(partitions)]
