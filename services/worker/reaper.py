"""Finds tasks that nothing will ever move again and puts their messages back on their topics.

Kafka (acks=all) is the durable log; Redis may lose its last writes, a worker may vanish with
a task, a broker may lose a message. Every live task has a deadline (``RedisKeys.deadlines``)
or a confirmed message position, and each sweep re-publishes:

- overdue tasks: PENDING whose publication the API never confirmed, PROGRESS whose lease no
  worker renewed, RETRY whose retry message never came back, FAILURE whose dead letter was
  never written (that one gets its dead letter, not a new run);
- PENDING tasks (older than a lease) whose message is provably gone: before the log's start,
  at or past its end, or behind the consumer group's committed offset.

It also advances workflows left in their outbox for over a sweep interval: a member's
terminal write made a step due (the next chain link, a chord's callback) and the worker that
wrote it died, or lost Kafka, before submitting it.

A re-published copy is harmless where the original still exists: the start write lets one
attempt run at a time and refuses settled tasks. The reaper runs on every worker; the claim
is atomic, so one sweep re-publishes a task once. It holds off for one lease after this
worker could not reach Redis (or started), so live workers renew their leases first.
"""

from __future__ import annotations

import time
from uuid import UUID

from aiokafka import TopicPartition
from pydantic import BaseModel

from services.core import metrics, topics
from services.core.catalog import Catalog
from services.core.errors import BackendUnavailableError
from services.core.kafka_security import client_options
from services.core.lag import OffsetReader
from services.core.logs import get_logger
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.core.store import Claim, Reclaimed, TaskStore
from services.core.workflow_engine import WorkflowEngine
from services.worker.leases import LeaseKeeper

log = get_logger(__name__)


class Reaper:
    def __init__(
        self,
        store: TaskStore,
        publisher: TaskPublisher,
        catalog: Catalog,
        settings: Settings,
        leases: LeaseKeeper,
        workflows: WorkflowEngine,
    ) -> None:
        self._store = store
        self._workflows = workflows
        self._publisher = publisher
        self._catalog = catalog
        self._settings = settings
        self._leases = leases
        self._offsets = OffsetReader(
            settings.kafka_bootstrap_servers,
            request_timeout_ms=settings.kafka_request_timeout_ms,
            security=client_options(settings),
        )

    async def close(self) -> None:
        await self._offsets.close()

    async def sweep(self) -> int:
        """One pass; returns how many tasks it re-published."""
        if time.monotonic() - self._leases.last_failure < self._store.lease_seconds:
            return 0
        claims = [await self._store.reclaim(task_id) for task_id in await self._store.overdue()]
        positions = await self._store.pending_positions(
            older_than_seconds=self._store.lease_seconds
        )
        for task_id, position in (await self._gone(positions)).items():
            claims.append(await self._store.reclaim(task_id, lost_position=position))
        republished = 0
        for claim in claims:
            if claim is not None and await self._republish(claim):
                republished += 1
        await self._store.trim_expired(self._catalog.names())
        await self._advance_workflows()
        return republished

    async def _advance_workflows(self) -> None:
        due = await self._workflows.book.due(
            older_than_seconds=self._settings.worker_sweep_interval_seconds
        )
        for workflow_id in due:
            submitted = await self._workflows.advance(workflow_id)
            if submitted:
                metrics.WORKFLOW_STEPS_REDRIVEN.inc(submitted)
                log.warning(
                    "workflow step left behind submitted",
                    workflow_id=str(workflow_id),
                    steps=submitted,
                )

    async def _gone(self, positions: dict[UUID, str]) -> dict[UUID, str]:
        """The positions among ``positions`` whose message no worker will ever receive."""
        if not positions:
            return {}
        parsed = {task_id: _parse(position) for task_id, position in positions.items()}
        partitions = sorted({tp for tp, _ in parsed.values()})
        known = set(await self._offsets.partitions(sorted({tp.topic for tp in partitions})))
        offsets = await self._offsets.read(
            self._settings.consumer_group, [tp for tp in partitions if tp in known]
        )
        gone = {}
        for task_id, (tp, offset) in parsed.items():
            read = offsets.get(tp)
            if read is None or (
                offset < read.begin
                or offset >= read.end
                or (read.committed is not None and read.committed > offset)
            ):  # the topic or partition no longer exists
                gone[task_id] = positions[task_id]
        return gone

    async def _republish(self, claim: Claim) -> bool:
        """Publish the claimed task again; False if Kafka would not take it (the claim stands:
        an overdue task's deadline moved on, a lost message is found again next sweep)."""
        message = claim.message
        sent: BaseModel = message
        topic = self._settings.task_topic(message.task, message.priority)
        if claim.letter is not None:
            topic, sent = topics.dead_letter_topic(self._settings.namespace), claim.letter
        try:
            position = await self._publisher.publish(topic, sent, key=str(message.id))
        except BackendUnavailableError as error:
            log.warning(
                "could not put an abandoned task back; trying again later",
                task_id=str(message.id),
                reason=error.reason,
            )
            return False
        if claim.reason in (Reclaimed.UNCONFIRMED, Reclaimed.MESSAGE_GONE):
            await self._store.confirm_published(message.id, position=position)
        elif claim.reason is Reclaimed.LETTER_UNSENT:
            await self._store.confirm_lettered(message.id)
        metrics.TASKS_REQUEUED.labels(message.task, claim.reason.value).inc()
        log.warning(
            "abandoned task put back on its topic",
            task_id=str(message.id),
            task=message.task,
            reason=claim.reason.value,
        )
        return True


def _parse(position: str) -> tuple[TopicPartition, int]:
    topic, partition, offset = position.rsplit("/", 2)
    return TopicPartition(topic, int(partition)), int(offset)
