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

    @property
    def timers(self) -> str:
        """Sorted set of held-back task ids (a delay, a rate or concurrency limit) scored by
        the time (ms) they are due to be queued; the workers' timer loop releases them. No TTL;
        a released or settled task leaves it."""
        return f"{self.prefix}timers"

    def rate_bucket(self, task: str) -> str:
        """String: the task's rate limit as one timestamp (µs), the next free start slot
        (GCRA). Expires a second after that slot passes."""
        return f"{self.prefix}rate-limit:{task}"

    def concurrency_slots(self, task: str, value: str) -> str:
        """Sorted set of the task ids running for one value of a concurrency key, scored by
        their lease end (ms). Emptied by the tasks that end; lapsed leases are dropped."""
        return f"{self.prefix}concurrency:{task}:{value}"

    def concurrency_waiters(self, task: str, value: str) -> str:
        """List of task ids waiting for a slot of that key, first to wake first."""
        return f"{self.prefix}concurrency:{task}:{value}:waiters"

    @property
    def scheduler_leader(self) -> str:
        """String: the token of the worker whose scheduler fires ticks; expires
        ``scheduler_lease_seconds`` after its last renewal."""
        return f"{self.prefix}scheduler:leader"

    def schedule(self, name: str) -> str:
        """Hash of one schedule: ``next`` tick (ms), ``last`` tick fired (ms), ``last_task``,
        ``skipped`` ticks. No TTL."""
        return f"{self.prefix}schedule:{name}"

    def workflow(self, workflow_id: UUID | str) -> str:
        """Hash of one workflow: ``kind``, ``total``, ``status``, ``done``, ``version``,
        ``wake``, ``spec``; per step ``m:<step>`` (its task id once submitted), ``f:<step>``
        (its terminal state), ``r:<step>`` (its result); ``failed``, ``result``. No TTL while
        it runs; ``result_ttl_seconds`` once it ends."""
        return f"{self.prefix}workflow:{workflow_id}"

    def workflow_events(self, workflow_id: UUID | str) -> str:
        """Stream: one entry per change of the workflow (a member submitted or finished, the
        workflow cancelled). Same TTL as the workflow."""
        return f"{self.prefix}workflow:{workflow_id}:events"

    @property
    def workflows_due(self) -> str:
        """Sorted set, the workflows' outbox: ids of workflows with a step to submit, scored
        by when it became due (ms). Written in the same script as the member's terminal write
        that made it due; left by the engine once the step is submitted, so a worker dying in
        between leaves it for the reaper. No TTL."""
        return f"{self.prefix}workflows:due"
