"""Every Redis key kafka-tasks writes, in one place, with how long each lives."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from services.core.topics import redis_key_prefix


@dataclass(frozen=True)
class RedisKeys:
    namespace: str

    @property
    def prefix(self) -> str:
        return redis_key_prefix(self.namespace)

    def record(self, task_id: UUID | str) -> str:
        """Hash: the task's record. No TTL while live; ``result_ttl_seconds`` once terminal."""
        return f"{self.prefix}task:{task_id}"

    def events(self, task_id: UUID | str) -> str:
        """Stream: one entry per state write (a full snapshot). Same TTL as the record."""
        return f"{self.prefix}task:{task_id}:events"

    def idempotency(self, key: str) -> str:
        """String "<task id> <request hash>" for an Idempotency-Key; ``result_ttl_seconds``."""
        return f"{self.prefix}idempotency:{key}"

    def index(self, *, task: str | None = None, state: str | None = None) -> str:
        """Sorted set of task ids for listing: all, by task name, by state, or by both.

        Scored by creation time (µs), except terminal states: by finish time, trimmed when the
        records expire. Written by the state script; ``idx:all`` and ``idx:task:<name>`` lose
        expired ids to the workers' sweeper and to readers that find them gone.
        """
        if task and state:
            return f"{self.prefix}idx:task:{task}:state:{state}"
        if task:
            return f"{self.prefix}idx:task:{task}"
        if state:
            return f"{self.prefix}idx:state:{state}"
        return f"{self.prefix}idx:all"

    def finished_per_second(self, state: str, second: int) -> str:
        """Counter: tasks that reached terminal ``state`` in that epoch second; lives 1 h."""
        return f"{self.prefix}rate:{state}:{second}"

    @property
    def deadlines(self) -> str:
        """Sorted set of task ids scored by the time (ms) by which something must happen to
        them, or the reaper acts: a PENDING task's publication deadline (until the API
        confirms it), a running attempt's lease (renewed by its worker), a retry's due time
        plus one lease, a FAILURE's dead letter (until it is written). No TTL; other terminal
        writes, and the written dead letter, remove their task."""
        return f"{self.prefix}deadlines"

    def withdrawn(self, task_id: UUID | str) -> str:
        """Marker of a submission the API answered 503 and took back: any copy of its message
        that still reaches a worker is skipped. Lives ``result_ttl_seconds``."""
        return f"{self.prefix}withdrawn:{task_id}"
