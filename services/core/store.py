"""The task state store on Redis.

Every write goes through one of the Lua scripts of ``state_scripts.py``, so checking the
transition, writing the fields, raising the version, appending the event, keeping the indexes
and deadlines and setting the expiry are a single atomic step, and safe to repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from pydantic import JsonValue
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.core import state_scripts
from services.core.errors import (
    AlreadyRunningError,
    BackendUnavailableError,
    IdempotencyConflictError,
    IdempotencyKeyInUseError,
    InvalidTransitionError,
    StaleAttemptError,
    TaskNotFoundError,
)
from services.core.keys import RedisKeys
from services.core.limiter import Limiter
from services.core.models import (
    DeadLetter,
    Hold,
    Progress,
    ScheduleTick,
    TaskError,
    TaskMessage,
    TaskRecord,
    utcnow,
)
from services.core.priorities import Priority
from services.core.redis_client import redis_error
from services.core.schedule_book import ScheduleBook
from services.core.settings import Settings
from services.core.states import TERMINAL_STATES, TaskState
from services.core.workflow_book import WorkflowBook
from services.core.workflows import WorkflowLink

FOLLOW_BLOCK_SECONDS: Final = 15
"""How long ``follow`` waits on Redis for the next write before yielding None; the client
it reads with needs a socket timeout longer than this."""

EVENTS_MAX_LEN: Final = 1000
"""Approximate cap on one task's event stream (progress reports can be many)."""

# Fields stored as plain strings or integers; every other field holds JSON.
_RAW_FIELDS: Final = frozenset(
    {
        "status",
        "version",
        "attempts",
        "delivery",
        "created_us",
        "write",
        "message",
        "due_ms",
        "rate_slot",
    }
)

CREATE_MARGIN_SECONDS: Final = 0.5
"""A create is refused by Redis once this much before the API stops waiting for it: had it
run in time, its reply would have arrived (a paused Redis runs queued commands on resume)."""


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def record_from_fields(fields: Mapping[bytes | str, bytes | str]) -> TaskRecord:
    data: dict[str, Any] = {}
    for raw_key, raw_value in fields.items():
        key, value = _decode(raw_key), _decode(raw_value)
        data[key] = value if key in _RAW_FIELDS else json.loads(value)
    return TaskRecord.model_validate(data)


def _flat_to_mapping(flat: list[bytes]) -> dict[bytes | str, bytes | str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class Reclaimed(StrEnum):
    """Why the reaper put a task's message back on its topic."""

    UNCONFIRMED = "unconfirmed"
    """PENDING, and the API never confirmed its publication (it died, or lost Redis)."""
    LEASE_LAPSED = "lease-lapsed"
    """PROGRESS, and no worker renewed its attempt's lease (the worker or its writes are gone)."""
    RETRY_OVERDUE = "retry-overdue"
    """RETRY, and its retry message never brought it back (lost with a broker's data)."""
    MESSAGE_GONE = "message-gone"
    """PENDING, and its message is no longer in Kafka, or was consumed without a trace."""
    LETTER_UNSENT = "letter-unsent"
    """FAILURE, and its dead letter was never written (the worker died after storing it)."""
    HOLD_OVERDUE = "hold-overdue"
    """Held back (a delay, a rate or concurrency limit), and no worker released it in time."""


@dataclass(frozen=True)
class Claim:
    """A task the reaper claimed: the message to publish again (or the dead letter to write,
    for LETTER_UNSENT), and why."""

    message: TaskMessage
    reason: Reclaimed
    letter: DeadLetter | None = None


@dataclass(frozen=True)
class Released:
    """A held-back task whose due time came, claimed for publication by one worker."""

    message: TaskMessage
    status: TaskState
    due_at: float
    """When it was due (epoch seconds)."""


class TaskStore:
    """Reads and writes task records. One instance per process, sharing one Redis pool."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        result_ttl_seconds: int,
        publish_deadline_seconds: float = 30.0,
        lease_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        streams: Redis | None = None,
    ) -> None:
        self._redis = redis
        # ``follow`` blocks on a connection for seconds at a time; a client of its own keeps
        # many followers from taking every connection requests need.
        self._streams = streams or redis
        self._keys = RedisKeys(namespace)
        self._ttl = result_ttl_seconds
        self._publish_deadline = publish_deadline_seconds
        self._lease = lease_seconds
        self._timeout = timeout_seconds
        self._create = redis.register_script(state_scripts.CREATE)
        self._update = redis.register_script(state_scripts.UPDATE)
        self._restore = redis.register_script(state_scripts.RESTORE)
        self._withdraw = redis.register_script(state_scripts.WITHDRAW)
        self._confirm = redis.register_script(state_scripts.CONFIRM)
        self._reclaim = redis.register_script(state_scripts.RECLAIM)
        self._renew = redis.register_script(state_scripts.RENEW)
        self._lettered = redis.register_script(state_scripts.LETTERED)
        self._hold = redis.register_script(state_scripts.HOLD)
        self._release = redis.register_script(state_scripts.RELEASE)

    @classmethod
    def from_settings(
        cls, redis: Redis, settings: Settings, *, streams: Redis | None = None
    ) -> TaskStore:
        return cls(
            redis,
            namespace=settings.namespace,
            result_ttl_seconds=settings.result_ttl_seconds,
            publish_deadline_seconds=settings.publish_deadline_seconds,
            lease_seconds=settings.worker_lease_seconds,
            timeout_seconds=settings.redis_timeout_seconds,
            streams=streams,
        )

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    @property
    def lease_seconds(self) -> float:
        return self._lease

    @property
    def redis(self) -> Redis:
        return self._redis

    def limiter(self) -> Limiter:
        """Rate and concurrency limits on the same Redis, errors classified the same way."""
        return Limiter(self._redis, self._keys, self._guard, lease_seconds=self._lease)

    def schedule_book(self) -> ScheduleBook:
        """The periodic scheduler's lease and tick bookkeeping on the same Redis."""
        return ScheduleBook(self._redis, self._keys, self._guard)

    def workflow_book(self) -> WorkflowBook:
        """Workflows' records, events and outbox on the same Redis."""
        return WorkflowBook(
            self._redis,
            self._streams,
            self._keys,
            self._guard,
            ttl_seconds=self._ttl,
            block_ms=FOLLOW_BLOCK_SECONDS * 1000,
        )

    async def ping(self) -> bool:
        try:
            return bool(await self._guard(self._redis.ping()))
        except BackendUnavailableError:
            return False

    async def create(
        self,
        task_id: UUID,
        task: str,
        payload: dict[str, JsonValue],
        *,
        idempotency_key: str | None = None,
        priority: Priority = Priority.DEFAULT,
        due_at: datetime | None = None,
        expires_at: datetime | None = None,
        schedule: ScheduleTick | None = None,
        workflow: WorkflowLink | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Store a new PENDING record; returns (record, created).

        A workflow member's id is derived from its workflow and step: if it exists already
        (the step was submitted before), that record is returned with False.

        With ``due_at`` the task is held back (``held_by`` eta): no publication is expected,
        the workers' timer loop queues it when due, and its deadline is one publication
        deadline later (for the reaper, should no worker do it).

        With an ``idempotency_key`` already used for the same request, returns that earlier
        task's record and False; used for a different request, raises IdempotencyConflictError.
        Raises BackendUnavailableError with ``maybe_applied`` when the record may exist
        although no answer came (the connection broke after the request was sent); a create
        that times out never applies later (Redis refuses it past its validity).
        """
        now = utcnow()
        fields: dict[str, Any] = {  # 'id' first: the script reads it by position
            "id": str(task_id),
            "task": task,
            "payload": payload,
            "created_at": now,
            "updated_at": now,
            "attempts": 0,
            "priority": priority.value,
            "expires_at": expires_at,
            "schedule": schedule.model_dump(mode="json") if schedule else None,
            "workflow": workflow.model_dump(mode="json") if workflow else None,
        }
        deadline = time.time() + self._publish_deadline
        if due_at is not None:
            fields |= {"due_at": due_at, "held_by": Hold.ETA.value}
            deadline = due_at.timestamp() + self._publish_deadline
        request_hash = _request_hash(task, payload)
        idempotency = self._keys.idempotency(idempotency_key) if idempotency_key else ""
        keys = [
            self._keys.record(task_id),
            self._keys.events(task_id),
            self._keys.deadlines,
            idempotency,
            self._keys.withdrawn(task_id),
            self._keys.timers if due_at is not None else "",
        ]
        # One connection, taken (and checked open) first: failing to get it means nothing
        # was sent; failing after it means the create may have run.
        connection = self._redis.client()
        try:
            await self._guard(connection.initialize())
            valid_for = self._timeout - min(CREATE_MARGIN_SECONDS, self._timeout / 4)
            args: list[Any] = [
                *self._common_args(),
                _ms(deadline),
                f"{task_id} {request_hash}",
                time.time_ns() // 1000 + int(valid_for * 1_000_000),
                *_encode_fields(fields),
                *(["due_ms", str(_ms(due_at.timestamp()))] if due_at is not None else []),
            ]
            try:
                outcome, detail = await self._guard(
                    self._create(keys=keys, args=args, client=connection)
                )
            except BackendUnavailableError as error:
                if isinstance(error.__cause__, TimeoutError | RedisTimeoutError):
                    raise  # timed out: past its validity, Redis refuses it if it runs late
                raise BackendUnavailableError("redis", error.reason, maybe_applied=True) from error
        finally:
            await connection.aclose()
        outcome = _decode(outcome)
        if outcome == "ok":
            return record_from_fields(_flat_to_mapping(detail)), True
        if outcome == "duplicate":
            earlier_id, earlier_hash = _decode(detail).split(" ")
            if earlier_hash != request_hash or idempotency_key is None:
                raise IdempotencyConflictError(idempotency_key or "", task_id=earlier_id)
            status, position = await self._guard(
                self._redis.hmget(self._keys.record(earlier_id), ["status", "message"])
            )
            if status == b"PENDING" and position is None:
                # Its first request may still be publishing it, or about to take it back:
                # answering 202 now could promise a task that is then withdrawn.
                raise IdempotencyKeyInUseError(idempotency_key, task_id=earlier_id)
            return await self.get(UUID(earlier_id)), False
        if outcome in ("expired", "withdrawn"):
            # Run after the API gave up on it (and answered 503): nobody waits for this.
            raise BackendUnavailableError("redis", f"the create came too late ({outcome})")
        if workflow is not None:
            return await self.get(task_id), False
        raise InvalidTransitionError(str(task_id), current="PENDING", requested="PENDING")

    async def confirm_published(self, task_id: UUID, *, position: str) -> None:
        """The broker acknowledged the task's message at ``position`` (topic/partition/offset):
        the reaper leaves it alone unless that message disappears."""
        keys = [self._keys.record(task_id), self._keys.deadlines]
        await self._guard(self._confirm(keys=keys, args=[str(task_id), position]))

    async def withdraw(self, task_id: UUID, *, idempotency_key: str | None = None) -> bool:
        """Take back a submission the API is about to refuse: its PENDING record goes, and any
        copy of its message that reaches a worker later is skipped. False if a worker started
        it already (then it was published after all, and runs)."""
        keys = [
            self._keys.record(task_id),
            self._keys.events(task_id),
            self._keys.deadlines,
            self._keys.idempotency(idempotency_key) if idempotency_key else "",
            self._keys.withdrawn(task_id),
        ]
        args: list[Any] = [self._keys.prefix, str(task_id), self._ttl]
        outcome, _ = await self._guard(self._withdraw(keys=keys, args=args))
        return _decode(outcome) == "withdrawn"

    async def restore(self, message: TaskMessage) -> TaskRecord | None:
        """Make the record of a task whose message reached a worker but whose record Redis no
        longer has (lost with the last writes before a crash). None if the submission was
        withdrawn; the existing record if there is one after all."""
        fields: dict[str, Any] = {
            "id": str(message.id),
            "task": message.task,
            "payload": message.payload,
            "created_at": message.submitted_at,
            "updated_at": utcnow(),
            "attempts": 0,
            "priority": message.priority.value,
            "expires_at": message.expires_at,
            "workflow": message.workflow.model_dump(mode="json") if message.workflow else None,
        }
        args: list[Any] = [
            *self._common_args(),
            *_encode_fields(fields),
            "created_us",
            str(_us(message.submitted_at)),
        ]
        keys = [
            self._keys.record(message.id),
            self._keys.events(message.id),
            self._keys.withdrawn(message.id),
        ]
        outcome, detail = await self._guard(self._restore(keys=keys, args=args))
        outcome = _decode(outcome)
        if outcome == "withdrawn":
            return None
        if outcome == "exists":
            return await self.get(message.id)
        return record_from_fields(_flat_to_mapping(detail))

    async def transition(
        self,
        task_id: UUID,
        status: TaskState,
        *,
        progress: Progress | None = None,
        result: JsonValue = None,
        error: TaskError | None = None,
        retry_at: datetime | None = None,
        start_delivery: str | None = None,
        attempt: int | None = None,
    ) -> TaskRecord:
        """Move a task to ``status``; refused (InvalidTransitionError) if the table forbids it.

        ``start_delivery`` (topic/partition/offset of the message) starts a new attempt; it is
        refused with AlreadyRunningError while another delivery's attempt holds its lease.
        A worker's later writes pass their ``attempt``: refused with StaleAttemptError once a
        newer attempt started, and a progress report is refused unless the task runs.
        """
        fields: dict[str, Any] = {"updated_at": utcnow(), "held_by": None}
        if progress is not None:
            fields["progress"] = progress.model_dump(mode="json")
        if status is TaskState.COMPLETE:
            fields["result"] = result
            fields["error"] = None  # an earlier attempt's error stays in the history only
        if error is not None:
            fields["error"] = error.model_dump(mode="json")
        fields["retry_at"] = retry_at
        args: list[Any] = [
            *self._common_args(),
            status.value,
            start_delivery or "",
            "" if attempt is None else str(attempt),
            self._deadline_after(status, retry_at),
            *_encode_fields(fields),
        ]
        keys = [
            self._keys.record(task_id),
            self._keys.events(task_id),
            self._keys.deadlines,
            *(await self._workflow_keys(task_id) if status.is_terminal else []),
        ]
        outcome, detail = await self._guard(self._update(keys=keys, args=args))
        outcome = _decode(outcome)
        if outcome == "ok":
            return record_from_fields(_flat_to_mapping(detail))
        if outcome == "missing":
            raise TaskNotFoundError(str(task_id))
        if outcome == "running":
            raise AlreadyRunningError(str(task_id), delivery=_decode(detail))
        if outcome == "stale":
            raise StaleAttemptError(
                str(task_id), attempt=attempt or 0, current=_decode(detail), requested=status
            )
        raise InvalidTransitionError(str(task_id), current=_decode(detail), requested=status.value)

    async def _workflow_keys(self, task_id: UUID) -> list[str]:
        """The keys a terminal write of a workflow member updates with it: its workflow, the
        workflow's events, the outbox. A member's link is written when it is created and
        never changes, so reading it before the write is safe."""
        link = await self._guard(self._redis.hget(self._keys.record(task_id), "workflow"))
        decoded = json.loads(link) if link else None
        if not decoded:
            return []
        workflow_id = decoded["id"]
        return [
            self._keys.workflow(workflow_id),
            self._keys.workflow_events(workflow_id),
            self._keys.workflows_due,
        ]

    async def confirm_lettered(self, task_id: UUID) -> None:
        """The dead letter of a FAILURE task is written: the reaper leaves it alone."""
        keys = [self._keys.record(task_id), self._keys.deadlines]
        await self._guard(self._lettered(keys=keys, args=[str(task_id)]))

    async def renew_leases(self, attempts: Mapping[UUID, int]) -> set[UUID]:
        """Extend the leases of running attempts (task id -> attempt); returns the tasks whose
        attempt is no longer the running one (over, or claimed by the reaper)."""
        if not attempts:
            return set()
        ids = list(attempts)
        keys = [self._keys.deadlines, *(self._keys.record(task_id) for task_id in ids)]
        args: list[Any] = [_ms(time.time() + self._lease), *(str(attempts[i]) for i in ids)]
        lost = await self._guard(self._renew(keys=keys, args=args))
        return {ids[int(position) - 1] for position in lost}

    async def overdue(self, *, limit: int = 100) -> list[UUID]:
        """Live tasks whose deadline passed (see ``RedisKeys.deadlines``), oldest first."""
        members = await self._guard(
            self._redis.zrangebyscore(self._keys.deadlines, "-inf", _ms(time.time()), 0, limit)
        )
        return [UUID(_decode(member)) for member in members]

    async def pending_positions(
        self, *, older_than_seconds: float, limit: int = 100
    ) -> dict[UUID, str]:
        """PENDING tasks created over ``older_than_seconds`` ago whose publication was
        confirmed: task id -> the position of their message (topic/partition/offset)."""
        high = _us(utcnow()) - int(older_than_seconds * 1_000_000)
        members = await self._guard(
            self._redis.zrangebyscore(
                self._keys.index(state=TaskState.PENDING.value), "-inf", high, 0, limit
            )
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.hget(self._keys.record(_decode(member)), "message")
            positions = await self._guard(pipe.execute())
        return {
            UUID(_decode(member)): _decode(position)
            for member, position in zip(members, positions, strict=True)
            if position
        }

    async def reclaim(self, task_id: UUID, *, lost_position: str | None = None) -> Claim | None:
        """Claim an abandoned task for re-publication: overdue, or (with ``lost_position``) a
        PENDING task whose message at that position is gone. None if it is not abandoned
        (any more): it settled, moved on, or its deadline was renewed."""
        now = time.time()
        keys = [self._keys.record(task_id), self._keys.deadlines]
        args: list[Any] = [str(task_id), _ms(now), _ms(now + self._lease), lost_position or ""]
        answer = await self._guard(self._reclaim(keys=keys, args=args))
        if _decode(answer[0]) != "due":
            return None
        status, task, payload, created_at, error, attempts, updated_at, priority, expires, held = (
            _decode(value) for value in answer[1:]
        )
        message = TaskMessage(
            id=task_id,
            task=json.loads(task),
            payload=json.loads(payload),
            submitted_at=json.loads(created_at),
            priority=json.loads(priority) if priority else Priority.DEFAULT,
            expires_at=json.loads(expires) if expires else None,
        )
        if lost_position is not None:
            return Claim(message, Reclaimed.MESSAGE_GONE)
        if status == TaskState.FAILURE:
            letter = DeadLetter(
                message=message,
                error=TaskError.model_validate_json(error),
                attempts=int(attempts),
                failed_at=json.loads(updated_at),
            )
            return Claim(message, Reclaimed.LETTER_UNSENT, letter)
        if held and json.loads(held) and status in (TaskState.PENDING, TaskState.RETRY):
            return Claim(message, Reclaimed.HOLD_OVERDUE)
        reason = {
            TaskState.PENDING: Reclaimed.UNCONFIRMED,
            TaskState.PROGRESS: Reclaimed.LEASE_LAPSED,
        }.get(TaskState(status), Reclaimed.RETRY_OVERDUE)
        return Claim(message, reason)

    async def hold(
        self,
        task_id: UUID,
        *,
        until: datetime,
        reason: Hold,
        rate_slot: int | None = None,
    ) -> TaskRecord:
        """Hold a PENDING or RETRY task back until ``until`` (its state stays; ``due_at`` and
        ``held_by`` say why), the message that brought it being consumed. ``rate_slot``: the
        rate-limit slot (µs) it reserved, so that it runs then without another token.
        TaskNotFoundError; InvalidTransitionError if it settled or runs."""
        fields: dict[str, Any] = {
            "updated_at": utcnow(),
            "due_at": until,
            "held_by": reason.value,
        }
        args: list[Any] = [
            *self._common_args(),
            _ms(until.timestamp()),
            _ms(until.timestamp() + self._publish_deadline),
            "" if rate_slot is None else str(rate_slot),
            *_encode_fields(fields),
        ]
        keys = [
            self._keys.record(task_id),
            self._keys.events(task_id),
            self._keys.deadlines,
            self._keys.timers,
        ]
        outcome, detail = await self._guard(self._hold(keys=keys, args=args))
        outcome = _decode(outcome)
        if outcome == "ok":
            return record_from_fields(_flat_to_mapping(detail))
        if outcome == "missing":
            raise TaskNotFoundError(str(task_id))
        raise InvalidTransitionError(str(task_id), current=_decode(detail), requested="held")

    async def due_timers(self, *, limit: int = 500) -> list[UUID]:
        """Held-back tasks whose due time came, earliest first."""
        members = await self._guard(
            self._redis.zrangebyscore(self._keys.timers, "-inf", _ms(time.time()), 0, limit)
        )
        return [UUID(_decode(member)) for member in members]

    async def next_timer(self) -> float | None:
        """When the earliest held-back task is due (epoch seconds), or None."""
        first = await self._guard(self._redis.zrange(self._keys.timers, 0, 0, withscores=True))
        return float(first[0][1]) / 1000 if first else None

    async def release(self, task_id: UUID) -> Released | None:
        """Claim a due held-back task for publication; None if another worker did, or it
        settled (its timer is dropped). Its publication must be confirmed, or the reaper
        publishes it after the publication deadline."""
        now = time.time()
        keys = [self._keys.record(task_id), self._keys.timers, self._keys.deadlines]
        args: list[Any] = [str(task_id), _ms(now), _ms(now + self._publish_deadline)]
        answer = await self._guard(self._release(keys=keys, args=args))
        if _decode(answer[0]) != "due":
            return None
        status, task, payload, created_at, priority, expires, slot, due = (
            _decode(value) for value in answer[1:]
        )
        message = TaskMessage(
            id=task_id,
            task=json.loads(task),
            payload=json.loads(payload),
            submitted_at=json.loads(created_at),
            priority=json.loads(priority) if priority else Priority.DEFAULT,
            expires_at=json.loads(expires) if expires else None,
            rate_slot=datetime.fromtimestamp(int(slot) / 1_000_000, UTC) if slot else None,
        )
        return Released(message, TaskState(status), due_at=float(due) / 1000)

    async def get(self, task_id: UUID) -> TaskRecord:
        fields = await self._guard(self._redis.hgetall(self._keys.record(task_id)))
        if not fields:
            raise TaskNotFoundError(str(task_id))
        return record_from_fields(fields)

    async def history(self, task_id: UUID) -> list[TaskRecord]:
        """Every state write the task went through (up to the stream's cap), oldest first."""
        entries = await self._guard(self._redis.xrange(self._keys.events(task_id)))
        if not entries:
            raise TaskNotFoundError(str(task_id))
        return [record_from_fields(fields) for _, fields in entries]

    async def follow(
        self, task_id: UUID, *, block_ms: int = FOLLOW_BLOCK_SECONDS * 1000
    ) -> AsyncGenerator[TaskRecord | None, None]:
        """Yield the current record, then each later state write until a terminal state.

        Yields None when ``block_ms`` passes without a write, so callers can send keep-alives.
        Reading the stream from the entry of the current record means no write is missed
        between the first read and the wait.
        """
        key = self._keys.events(task_id)
        latest = await self._guard(self._streams.xrevrange(key, count=1))
        if not latest:
            raise TaskNotFoundError(str(task_id))
        last_id, fields = latest[0]
        record = record_from_fields(fields)
        yield record
        while not record.status.is_terminal:
            answer = await self._guard(
                self._streams.xread({key: last_id}, block=block_ms),
                seconds=block_ms / 1000 + self._timeout,
            )
            if not answer:
                yield None
                continue
            for entry_id, entry_fields in answer[0][1]:
                last_id = entry_id
                record = record_from_fields(entry_fields)
                yield record

    async def list_tasks(
        self,
        *,
        state: TaskState | None = None,
        task: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> tuple[list[TaskRecord], int | None]:
        """Newest first, from the index that matches the filters (no scan of the key space).

        The time window applies to creation time, or to finish time when ``state`` is terminal
        (that index is ordered by it). Returns the page and the cursor of the next one.
        """
        key = self._keys.index(task=task, state=state.value if state else None)
        high: str = f"({cursor}" if cursor is not None else (str(_us(until)) if until else "+inf")
        low = str(_us(since)) if since else "-inf"
        entries = await self._guard(
            self._redis.zrevrangebyscore(key, high, low, start=0, num=limit, withscores=True)
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for member, _ in entries:
                pipe.hgetall(self._keys.record(_decode(member)))
            found = await self._guard(pipe.execute())
        records = [record_from_fields(fields) for fields in found if fields]
        gone = [member for (member, _), fields in zip(entries, found, strict=True) if not fields]
        if gone:  # expired since they were indexed
            await self._guard(self._redis.zrem(key, *gone))
        next_cursor = int(entries[-1][1]) if len(entries) == limit else None
        return records, next_cursor

    async def counts(self, task_names: list[str]) -> dict[str, dict[str, int]]:
        """Tasks per task name and state, from the indexes (terminal ones trimmed first)."""
        cutoff = f"({self._common_args()[2]}"
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in task_names:
                for state in TaskState:
                    key = self._keys.index(task=name, state=state.value)
                    if state.is_terminal:
                        pipe.zremrangebyscore(key, "-inf", cutoff)
                    pipe.zcard(key)
            answers = iter(await self._guard(pipe.execute()))
        result: dict[str, dict[str, int]] = {}
        for name in task_names:
            result[name] = {}
            for state in TaskState:
                if state.is_terminal:
                    next(answers)  # the trim's count
                result[name][state.value] = int(next(answers))
        return result

    async def finished_per_second(self, seconds: int) -> dict[str, list[int]]:
        """For each terminal state, how many tasks reached it in each of the last ``seconds``
        seconds (oldest first, the current second last)."""
        now = int(time.time())
        span = range(now - seconds + 1, now + 1)
        result: dict[str, list[int]] = {}
        for state in sorted(TERMINAL_STATES):
            keys = [self._keys.finished_per_second(state.value, second) for second in span]
            values = await self._guard(self._redis.mget(keys))
            result[state.value] = [int(v) if v else 0 for v in values]
        return result

    async def trim_expired(self, task_names: list[str], *, batch: int = 200) -> int:
        """Remove ids of expired records from the by-creation indexes; returns how many."""
        cutoff = self._common_args()[2]
        all_key = self._keys.index()
        candidates = await self._guard(
            self._redis.zrangebyscore(all_key, "-inf", cutoff, start=0, num=batch)
        )
        if not candidates:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in candidates:
                pipe.exists(self._keys.record(_decode(member)))
            alive = await self._guard(pipe.execute())
        gone = [m for m, exists in zip(candidates, alive, strict=True) if not exists]
        if gone:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(all_key, *gone)
                for name in task_names:
                    pipe.zrem(self._keys.index(task=name), *gone)
                await self._guard(pipe.execute())
        return len(gone)

    def _common_args(self) -> list[Any]:
        now_us = time.time_ns() // 1000
        return [
            self._keys.prefix,
            str(now_us),
            str(now_us - self._ttl * 1_000_000),
            str(now_us // 1_000_000),
            self._ttl,
            EVENTS_MAX_LEN,
            uuid.uuid4().hex,  # the write id: a repeat of this call is recognised
        ]

    def _deadline_after(self, status: TaskState, retry_at: datetime | None) -> str:
        """The task's next deadline once it is in ``status`` ('' for none)."""
        if status is TaskState.PROGRESS:
            return str(_ms(time.time() + self._lease))
        if status is TaskState.RETRY and retry_at is not None:
            return str(_ms(retry_at.timestamp() + self._lease))
        if status is TaskState.FAILURE:  # until its dead letter is written
            return str(_ms(time.time() + self._lease))
        return ""

    async def _guard(self, awaitable: Awaitable[Any], *, seconds: float | None = None) -> Any:
        """Await a Redis call within the backend timeout (or ``seconds``); every error it can
        raise comes out classified (see ``redis_error``)."""
        limit = seconds or self._timeout
        try:
            async with asyncio.timeout(limit):
                return await awaitable
        except TimeoutError as error:
            raise BackendUnavailableError("redis", f"no answer within {limit:g} s") from error
        except (RedisError, OSError) as error:
            raise redis_error(error) from error


def _encode_fields(fields: dict[str, Any]) -> list[str]:
    encoded: list[str] = []
    for name, value in fields.items():
        encoded += [name, json.dumps(value, default=_json_default)]
    return encoded


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _ms(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1000)


def _request_hash(task: str, payload: dict[str, JsonValue]) -> str:
    canonical = json.dumps([task, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
