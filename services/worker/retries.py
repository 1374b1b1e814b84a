"""Consumes the retry topic: holds each retry until it is due, then puts the task message back
on its topic. Waiting here never blocks a task topic's partition."""

from __future__ import annotations

import asyncio

import structlog
from pydantic import ValidationError

from services.core.errors import TaskNotFoundError
from services.core.logs import get_logger
from services.core.models import ScheduledRetry, utcnow
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.core.states import TaskState
from services.core.store import TaskStore
from services.worker.backoff import until_available

log = get_logger(__name__)


class RetryScheduler:
    def __init__(self, store: TaskStore, publisher: TaskPublisher, settings: Settings) -> None:
        self._store = store
        self._publisher = publisher
        self._settings = settings

    async def run(self, raw: bytes, delivery: str) -> None:
        try:
            retry = ScheduledRetry.model_validate_json(raw)
        except ValidationError as error:
            log.error("not a retry message; skipped", error=str(error))
            return
        with structlog.contextvars.bound_contextvars(
            task_id=str(retry.message.id), task=retry.message.task
        ):
            wait = (retry.due_at - utcnow()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                record = await until_available(lambda: self._store.get(retry.message.id))
            except TaskNotFoundError:
                log.warning("retry dropped: no record for this task")
                return
            if record.status is not TaskState.RETRY or record.attempts != retry.attempt:
                # Settled, cancelled, or a later attempt's retry: this message (re-published
                # after a rebalance, say) must not cut that attempt's backoff short.
                log.info(
                    "retry dropped: the task no longer waits for it",
                    status=record.status,
                    attempts=record.attempts,
                    retry_after_attempt=retry.attempt,
                )
                return
            topic = self._settings.task_topic(retry.message.task, retry.message.priority)
            await until_available(
                lambda: self._publisher.publish(topic, retry.message, key=str(retry.message.id))
            )
            log.info("retry due; task message sent again", after_attempt=retry.attempt)
