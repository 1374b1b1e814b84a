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
