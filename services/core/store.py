"""The task state store on Redis: a single server or a cluster, with the same code.

Every write goes through one of the Lua scripts of ``state_scripts.py``, so checking the
transition, writing the fields, raising the version, appending the event, keeping the indexes
and deadlines and setting the expiry are a single atomic step, and safe to repeat. Each
script's keys are in one shard (``keys.py``); reads that span tasks (listing, counts, rates,
the reaper's sweep) fan out over the shards in one pipeline (one round trip per node) and
merge what they find.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, StrEnum, auto
from typing import Any, Final, Literal
from uuid import UUID

from pydantic import JsonValue
from redis.asyncio import RedisCluster
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.core import state_scripts
from services.core.errors import (
    AlreadyRunningError,
    BackendUnavailableError,
    IdempotencyConflictError,
    IdempotencyKeyInUseError,
    InvalidTransitionError,
    StaleAttemptError,
    StateStoreError,
    TaskNotFoundError,
)
from services.core.keys import SHARDS, RedisKeys, shard_of, shard_of_idempotency_key
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
from services.core.redis_client import RedisClient, redis_error
from services.core.redis_client import ping as ping_redis
from services.core.schedule_book import ScheduleBook
from services.core.settings import Settings
from services.core.state_codec import (
    apply_event,
    encode_fields,
    flat_to_mapping,
    history_from,
    record_from_fields,
    text,
)
from services.core.state_scripts import Layout
from services.core.states import TERMINAL_STATES, TaskState
from services.core.workflow_book import WorkflowBook
from services.core.workflows import WorkflowLink

FOLLOW_BLOCK_SECONDS: Final = 15
"""How long ``follow`` waits on Redis for the next write before yielding None; the client
it reads with needs a socket timeout longer than this."""

EVENTS_MAX_LEN: Final = 1000
"""Approximate cap on one task's event stream (progress reports can be many)."""

CREATE_MARGIN_SECONDS: Final = 0.5
"""A create is refused by Redis once this much before the API stops waiting for it: had it
run in time, its reply would have arrived (a paused Redis runs queued commands on resume)."""

SHARD_IDS: Final = range(SHARDS)


class Unknown(Enum):
    """A value the caller does not know: the store reads it."""

    TOKEN = auto()


UNKNOWN: Final = Unknown.TOKEN


@dataclass(frozen=True)
class NewTask:
    """A task to create: its id, name, payload and, if the client sent one, Idempotency-Key."""

    id: UUID
    task: str
    payload: dict[str, JsonValue]
    idempotency_key: str | None = None
    priority: Priority = Priority.DEFAULT
    due_at: datetime | None = None
    """Held back until then (a countdown or an eta): queued by the timer loop."""
    expires_at: datetime | None = None
    schedule: ScheduleTick | None = None
    workflow: WorkflowLink | None = None


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
    HOLD_OVERDUE = "hold-overdue"
    """Held back (a delay, a rate or concurrency limit), and no worker released it in time."""
    LETTER_UNSENT = "letter-unsent"
    """FAILURE, and its dead letter was never written (the worker died after storing it)."""


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


@dataclass(frozen=True)
class _Clock:
    """One reading of the clock, shared by a write's arguments and its keys."""

    us: int

    @property
    def seconds(self) -> int:
        return self.us // 1_000_000


class TaskStore:
    """Reads and writes task records. One instance per process, sharing one Redis pool."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        namespace: str,
        result_ttl_seconds: int,
        publish_deadline_seconds: float = 30.0,
        lease_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        streams: RedisClient | None = None,
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
        self._hold = redis.register_script(state_scripts.HOLD)
        self._release = redis.register_script(state_scripts.RELEASE)
        self._lettered = redis.register_script(state_scripts.LETTERED)
        self._history = redis.register_script(state_scripts.HISTORY)
        self._snapshot = self._streams.register_script(state_scripts.SNAPSHOT)

    @classmethod
    def from_settings(
        cls, redis: RedisClient, settings: Settings, *, streams: RedisClient | None = None
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
            return bool(await self._guard(ping_redis(self._redis)))
        except BackendUnavailableError:
            return False

    # --- writes --------------------------------------------------------------------------
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

        With ``due_at`` the task is held back (``held_by`` eta): no publication is expected,
        the workers' timer loop queues it when due, and its deadline is one publication
        deadline later (for the reaper, should no worker do it). A workflow member's id is
        derived from its workflow and step: if it exists already (the step was submitted
        before), that record is returned with False.

        With an ``idempotency_key`` already used for the same request, returns that earlier
        task's record and False; used for a different request, raises IdempotencyConflictError.
        The id must be in the key's shard (``keys.new_task_id(key)``): the key and the record
        are then claimed in one atomic script. Raises BackendUnavailableError with
        ``maybe_applied`` when the record may exist although no answer came (the connection
        broke after the request was sent); a create that times out never applies later
        (Redis refuses it past its validity).
        """
        new = NewTask(
            task_id,
            task,
            payload,
            idempotency_key,
            priority=priority,
            due_at=due_at,
            expires_at=expires_at,
            schedule=schedule,
            workflow=workflow,
        )
        [created] = await self.create_many([new])
        return created

    async def create_many(self, tasks: list[NewTask]) -> list[tuple[TaskRecord, bool]]:
        """``create`` for many tasks in one round trip on a single server (a pipeline of
        creates on one connection, each its own atomic step), in order; on a cluster, one
        call per task, all at once (each to the node of its slot). One refusal (a conflicting
        Idempotency-Key) raises for all."""
        calls = [self._create_call(new) for new in tasks]
        if isinstance(self._redis, RedisCluster):
            sent = await asyncio.gather(
                *(self._send_create(keys, args) for keys, args, _ in calls),
                return_exceptions=True,
            )
            failures = [answer for answer in sent if isinstance(answer, BaseException)]
            if failures:
                # One that may have run comes first: the caller then takes back them all.
                applied = [
                    error
                    for error in failures
                    if isinstance(error, BackendUnavailableError) and error.maybe_applied
                ]
                raise (applied or failures)[0]
            answers: list[Any] = [a for a in sent if not isinstance(a, BaseException)]
        else:
            answers = await self._send_creates(calls)
        return [
            await self._created(new, text(outcome), detail, request_hash)
            for new, (_, _, request_hash), (outcome, detail) in zip(
                tasks, calls, answers, strict=True
            )
        ]

    async def _send_creates(self, calls: list[tuple[list[str], list[Any], str]]) -> list[Any]:
        """The creates in one pipeline on one connection of a single server, taken (and
        checked open) first: failing to get it means nothing was sent; failing after it means
        the creates may have run."""
        assert not isinstance(self._redis, RedisCluster)
        connection = self._redis.client()
        try:
            await self._guard(connection.initialize())
            async with connection.pipeline(transaction=False) as pipe:
                for keys, args, _ in calls:
                    await self._create(keys=keys, args=args, client=pipe)
                answers: list[Any] = await self._maybe_applied(pipe.execute())
                return answers
        finally:
            await connection.aclose()

    def _create_call(self, new: NewTask) -> tuple[list[str], list[Any], str]:
        """The create script's keys and arguments for one task, and its request hash."""
        key = new.idempotency_key
        if key is not None and shard_of(new.id) != shard_of_idempotency_key(key):
            raise ValueError(
                f"task id {new.id} is not in the shard of its Idempotency-Key: make it with "
                "keys.new_task_id(idempotency_key)"
            )
        clock = _now()
        now = utcnow()
        fields: dict[str, Any] = {  # 'id' first: the script reads it by position
            "id": str(new.id),
            "task": new.task,
            "payload": new.payload,
            "created_at": now,
            "updated_at": now,
            "attempts": 0,
            "priority": new.priority.value,
            "expires_at": new.expires_at,
            "schedule": new.schedule.model_dump(mode="json") if new.schedule else None,
            "workflow": new.workflow.model_dump(mode="json") if new.workflow else None,
        }
        deadline = time.time() + self._publish_deadline
        due: list[str] = []
        if new.due_at is not None:
            fields |= {"due_at": new.due_at, "held_by": Hold.ETA.value}
            deadline = new.due_at.timestamp() + self._publish_deadline
            due = ["due_ms", str(_ms(new.due_at.timestamp()))]
        request_hash = _request_hash(new.task, new.payload)
        keys = self._layout_keys(
            state_scripts.CREATE_KEYS, new.id, task=new.task, idempotency_key=key
        )
        valid_for = self._timeout - min(CREATE_MARGIN_SECONDS, self._timeout / 4)
        args: list[Any] = [
            *self._common_args(clock),
            _ms(deadline),
            f"{new.id} {request_hash}",
            time.time_ns() // 1000 + int(valid_for * 1_000_000),
            *encode_fields(fields),
            *due,
        ]
        return keys, args, request_hash

    async def _created(
        self, new: NewTask, outcome: str, detail: Any, request_hash: str
    ) -> tuple[TaskRecord, bool]:
        """What the create script's answer means for ``new``."""
        if outcome == "ok":
            return record_from_fields(flat_to_mapping(detail)), True
        if outcome == "duplicate":
            earlier_id, earlier_hash = text(detail).split(" ")
            key = new.idempotency_key
            if earlier_hash != request_hash or key is None:
                raise IdempotencyConflictError(key or "", task_id=earlier_id)
            status, position = await self._guard(
                self._redis.hmget(self._keys.record(earlier_id), ["status", "message"])
            )
            if status == b"PENDING" and position is None:
                # Its first request may still be publishing it, or about to take it back:
                # answering 202 now could promise a task that is then withdrawn.
                raise IdempotencyKeyInUseError(key, task_id=earlier_id)
            return await self.get(UUID(earlier_id)), False
        if outcome in ("expired", "withdrawn"):
            # Run after the API gave up on it (and answered 503): nobody waits for this.
            raise BackendUnavailableError("redis", f"the create came too late ({outcome})")
        if new.workflow is not None:  # the step was submitted before: that task
            return await self.get(new.id), False
        raise InvalidTransitionError(str(new.id), current="PENDING", requested="PENDING")

    async def _send_create(self, keys: list[str], args: list[Any]) -> Any:
        """Run the create script, telling "nothing was sent" (a plain BackendUnavailableError)
        from "it may have run" (``maybe_applied``): first make sure the connection it goes
        out on is open (one connection of a single server), or that the node owning its slot
        answers (a cluster); a failure after that may have been applied."""
        if isinstance(self._redis, RedisCluster):
            await self._guard(self._probe_node_of(keys[0]))
            return await self._maybe_applied(self._create(keys=keys, args=args))
        connection = self._redis.client()
        try:
            await self._guard(connection.initialize())
            return await self._maybe_applied(self._create(keys=keys, args=args, client=connection))
        finally:
            await connection.aclose()

    async def _probe_node_of(self, key: str) -> None:
        assert isinstance(self._redis, RedisCluster)
        await self._redis.initialize()
        node = self._redis.get_node_from_key(key)
        if node is None:
            raise BackendUnavailableError("redis", f"no cluster node serves the slot of {key}")
        await self._redis.ping(target_nodes=node)

    async def _maybe_applied(self, call: Awaitable[Any]) -> Any:
        try:
            return await self._guard(call)
        except BackendUnavailableError as error:
            if isinstance(error.__cause__, TimeoutError | RedisTimeoutError):
                raise  # timed out: past its validity, Redis refuses it if it runs late
            raise BackendUnavailableError("redis", error.reason, maybe_applied=True) from error

    async def confirm_published(self, task_id: UUID, *, position: str) -> None:
        """The broker acknowledged the task's message at ``position`` (topic/partition/offset):
        the reaper leaves it alone unless that message disappears."""
        keys = self._layout_keys(state_scripts.SETTLE_KEYS, task_id)
        await self._guard(self._confirm(keys=keys, args=[str(task_id), position]))

    async def confirm_published_many(self, positions: Mapping[UUID, str]) -> None:
        """``confirm_published`` for many tasks in one round trip (a single server) or all at
        once (a cluster)."""
        if isinstance(self._redis, RedisCluster):
            await asyncio.gather(
                *(self.confirm_published(i, position=p) for i, p in positions.items())
            )
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for task_id, position in positions.items():
                keys = self._layout_keys(state_scripts.SETTLE_KEYS, task_id)
                await self._confirm(keys=keys, args=[str(task_id), position], client=pipe)
            await self._guard(pipe.execute())

    async def withdraw(
        self, task_id: UUID, *, task: str, idempotency_key: str | None = None
    ) -> bool:
        """Take back a submission the API is about to refuse: its PENDING record goes, and any
        copy of its message that reaches a worker later is skipped. False if a worker started
        it already (then it was published after all, and runs)."""
        keys = self._layout_keys(
            state_scripts.WITHDRAW_KEYS, task_id, task=task, idempotency_key=idempotency_key
        )
        outcome, _ = await self._guard(self._withdraw(keys=keys, args=[str(task_id), self._ttl]))
        return text(outcome) == "withdrawn"

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
            *self._common_args(_now()),
            *encode_fields(fields),
            "created_us",
            str(_us(message.submitted_at)),
        ]
        keys = self._layout_keys(state_scripts.RESTORE_KEYS, message.id, task=message.task)
        outcome, detail = await self._guard(self._restore(keys=keys, args=args))
        outcome = text(outcome)
        if outcome == "withdrawn":
            return None
        if outcome == "exists":
            return await self.get(message.id)
        return record_from_fields(flat_to_mapping(detail))

    async def transition(
        self,
        task_id: UUID,
        status: TaskState,
        *,
        task: str | None = None,
        progress: Progress | None = None,
        result: JsonValue = None,
        error: TaskError | None = None,
        retry_at: datetime | None = None,
        start_delivery: str | None = None,
        attempt: int | None = None,
        workflow: UUID | Literal[Unknown.TOKEN] | None = UNKNOWN,
    ) -> TaskRecord:
        """Move a task to ``status``; refused (InvalidTransitionError) if the table forbids it.

        ``task`` is the task's name, which its index keys carry: pass it when known (the
        worker has its message); without it the store reads it first. ``workflow``, the
        workflow the task is a member of (None: of none), goes with a terminal write; when
        it or ``task`` is not given, a terminal write reads both first (one round trip more).
        ``start_delivery`` (topic/partition/offset of the message) starts a new attempt; it is
        refused with AlreadyRunningError while another delivery's attempt holds its lease.
        A worker's later writes pass their ``attempt``: refused with StaleAttemptError once a
        newer attempt started, and a progress report is refused unless the task runs.
        """
        workflow_id = None if workflow is UNKNOWN else workflow
        if task is None or (status.is_terminal and workflow is UNKNOWN):
            # A member's workflow is written at its create and never changes: reading it
            # before the write is safe; its keys go into the terminal write.
            task, workflow_id = await self._name_and_workflow(task_id)
        fields: dict[str, Any] = {"updated_at": utcnow(), "held_by": None}
        if progress is not None:
            fields["progress"] = progress.model_dump(mode="json")
        if status is TaskState.COMPLETE:
            fields["result"] = result
            fields["error"] = None  # an earlier attempt's error stays in the history only
        if error is not None:
            fields["error"] = error.model_dump(mode="json")
        fields["retry_at"] = retry_at
        clock = _now()
        args: list[Any] = [
            *self._common_args(clock),
            status.value,
            json.dumps(task),
            start_delivery or "",
            "" if attempt is None else str(attempt),
            self._deadline_after(status, retry_at),
            *encode_fields(fields),
        ]
        keys = self._layout_keys(
            state_scripts.UPDATE_KEYS,
            task_id,
            task=task,
            target=status,
            clock=clock,
            workflow_id=workflow_id,
        )
        outcome, detail = await self._guard(self._update(keys=keys, args=args))
        outcome = text(outcome)
        if outcome == "ok":
            return record_from_fields(flat_to_mapping(detail))
        if outcome == "missing":
            raise TaskNotFoundError(str(task_id))
        if outcome == "running":
            raise AlreadyRunningError(str(task_id), delivery=text(detail))
        if outcome == "stale":
            raise StaleAttemptError(
                str(task_id), attempt=attempt or 0, current=text(detail), requested=status
            )
        if outcome == "task":
            raise StateStoreError(
                f"a write for task {task_id} named it {task!r}, but it is {text(detail)}"
            )
        if outcome == "workflow":
            # The caller's word on membership disagrees with the record (a message from
            # another version, or a bug): written again with what the record says.
            return await self.transition(
                task_id,
                status,
                progress=progress,
                result=result,
                error=error,
                retry_at=retry_at,
                start_delivery=start_delivery,
                attempt=attempt,
            )
        raise InvalidTransitionError(str(task_id), current=text(detail), requested=status.value)

    async def _name_and_workflow(self, task_id: UUID) -> tuple[str, UUID | None]:
        """The task's name and the workflow it is a member of (None if none)."""
        stored, link = await self._guard(
            self._redis.hmget(self._keys.record(task_id), ["task", "workflow"])
        )
        if stored is None:
            raise TaskNotFoundError(str(task_id))
        member = json.loads(link) if link else None
        return json.loads(stored), UUID(member["id"]) if member else None

    async def confirm_lettered(self, task_id: UUID) -> None:
        """The dead letter of a FAILURE task is written: the reaper leaves it alone."""
        keys = self._layout_keys(state_scripts.SETTLE_KEYS, task_id)
        await self._guard(self._lettered(keys=keys, args=[str(task_id)]))

    async def renew_leases(self, attempts: Mapping[UUID, int]) -> set[UUID]:
        """Extend the leases of running attempts (task id -> attempt); returns the tasks whose
        attempt is no longer the running one (over, or claimed by the reaper). One script per
        shard that holds any of them."""
        by_shard: dict[int, list[UUID]] = defaultdict(list)
        for task_id in attempts:
            by_shard[shard_of(task_id)].append(task_id)
        lease_end = _ms(time.time() + self._lease)

        async def renew(shard: int, ids: list[UUID]) -> set[UUID]:
            keys = [self._keys.deadlines(shard), *(self._keys.record(i) for i in ids)]
            args: list[Any] = [lease_end, *(str(attempts[i]) for i in ids)]
            lost = await self._guard(self._renew(keys=keys, args=args))
            return {ids[int(position) - 1] for position in lost}

        answers = await asyncio.gather(*(renew(s, ids) for s, ids in by_shard.items()))
        return set().union(*answers)

    async def reclaim(self, task_id: UUID, *, lost_position: str | None = None) -> Claim | None:
        """Claim an abandoned task for re-publication: overdue, or (with ``lost_position``) a
        PENDING task whose message at that position is gone. None if it is not abandoned
        (any more): it settled, moved on, or its deadline was renewed."""
        now = time.time()
        keys = self._layout_keys(state_scripts.SETTLE_KEYS, task_id)
        args: list[Any] = [str(task_id), _ms(now), _ms(now + self._lease), lost_position or ""]
        answer = await self._guard(self._reclaim(keys=keys, args=args))
        if text(answer[0]) != "due":
            return None
        status, task, payload, created_at, error, attempts, updated_at = (
            text(value) for value in answer[1:8]
        )
        priority, expires, held, workflow = (text(value) for value in answer[8:])
        message = TaskMessage(
            id=task_id,
            task=json.loads(task),
            payload=json.loads(payload),
            submitted_at=json.loads(created_at),
            priority=json.loads(priority) if priority else Priority.DEFAULT,
            expires_at=json.loads(expires) if expires else None,
            workflow=json.loads(workflow) if workflow else None,
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
        fields: dict[str, Any] = {"updated_at": utcnow(), "due_at": until, "held_by": reason.value}
        args: list[Any] = [
            *self._common_args(_now()),
            _ms(until.timestamp()),
            _ms(until.timestamp() + self._publish_deadline),
            "" if rate_slot is None else str(rate_slot),
            *encode_fields(fields),
        ]
        keys = self._layout_keys(state_scripts.HOLD_KEYS, task_id)
        outcome, detail = await self._guard(self._hold(keys=keys, args=args))
        outcome = text(outcome)
        if outcome == "ok":
            return record_from_fields(flat_to_mapping(detail))
        if outcome == "missing":
            raise TaskNotFoundError(str(task_id))
        raise InvalidTransitionError(str(task_id), current=text(detail), requested="held")

    async def due_timers(self, *, limit: int = 500) -> list[UUID]:
        """Held-back tasks whose due time came, earliest first (every shard's, merged)."""
        now = _ms(time.time())
        answers = await self._fan_out(
            lambda pipe, shard: pipe.zrangebyscore(
                self._keys.timers(shard), "-inf", now, 0, limit, withscores=True
            )
        )
        return [UUID(text(member)) for member, _ in _merged(answers, limit, newest_first=False)]

    async def next_timer(self) -> float | None:
        """When the earliest held-back task is due (epoch seconds), or None."""
        answers = await self._fan_out(
            lambda pipe, shard: pipe.zrange(self._keys.timers(shard), 0, 0, withscores=True)
        )
        firsts = [float(answer[0][1]) for answer in answers if answer]
        return min(firsts) / 1000 if firsts else None

    async def release(self, task_id: UUID) -> Released | None:
        """Claim a due held-back task for publication; None if another worker did, or it
        settled (its timer is dropped). Its publication must be confirmed, or the reaper
        publishes it after the publication deadline."""
        now = time.time()
        keys = self._layout_keys(state_scripts.RELEASE_KEYS, task_id)
        args: list[Any] = [str(task_id), _ms(now), _ms(now + self._publish_deadline)]
        answer = await self._guard(self._release(keys=keys, args=args))
        if text(answer[0]) != "due":
            return None
        status, task, payload, created_at, priority, expires, slot, due, workflow = (
            text(value) for value in answer[1:]
        )
        message = TaskMessage(
            id=task_id,
            task=json.loads(task),
            payload=json.loads(payload),
            submitted_at=json.loads(created_at),
            priority=json.loads(priority) if priority else Priority.DEFAULT,
            expires_at=json.loads(expires) if expires else None,
            rate_slot=datetime.fromtimestamp(int(slot) / 1_000_000, UTC) if slot else None,
            workflow=json.loads(workflow) if workflow else None,
        )
        return Released(message, TaskState(status), due_at=float(due) / 1000)

    # --- one task's reads ----------------------------------------------------------------
    async def get(self, task_id: UUID) -> TaskRecord:
        fields = await self._guard(self._redis.hgetall(self._keys.record(task_id)))
        if not fields:
            raise TaskNotFoundError(str(task_id))
        return record_from_fields(fields)

    async def history(self, task_id: UUID) -> list[TaskRecord]:
        """Every state write the task went through (up to the stream's cap), oldest first."""
        keys = self._layout_keys(state_scripts.READ_KEYS, task_id)
        fields, entries = await self._guard(self._history(keys=keys, args=[]))
        if not fields:
            raise TaskNotFoundError(str(task_id))
        return history_from(flat_to_mapping(fields), [(i, flat_to_mapping(e)) for i, e in entries])

    async def follow(
        self, task_id: UUID, *, block_ms: int = FOLLOW_BLOCK_SECONDS * 1000
    ) -> AsyncGenerator[TaskRecord | None, None]:
        """Yield the current record, then the record after each later write until a terminal
        state.

        Yields None when ``block_ms`` passes without a write, so callers can send keep-alives.
        The record and the id of its latest event are read together, and the events are
        followed from there (from the start of a stream a queued task does not have yet): no
        write is missed or repeated. Each event holds what its write changed; applied to the
        record before it, it gives the record after it.
        """
        keys = self._layout_keys(state_scripts.READ_KEYS, task_id)
        events = keys[1]
        fields, last_id = await self._guard(self._snapshot(keys=keys, args=[]))
        if not fields:
            raise TaskNotFoundError(str(task_id))
        record = record_from_fields(flat_to_mapping(fields))
        last_id = text(last_id) or "0-0"
        yield record
        while not record.status.is_terminal:
            answer = await self._guard(
                self._streams.xread({events: last_id}, block=block_ms),
                seconds=block_ms / 1000 + self._timeout,
            )
            if not answer:
                yield None
                continue
            for entry_id, change in answer[0][1]:
                last_id = entry_id
                status = TaskState(text(change[b"status"]))
                # A terminal record never changes again: read it whole (its result with it).
                final = await self.get(task_id) if status.is_terminal else None
                record = apply_event(record, change, final=final)
                yield record

    # --- reads across shards -------------------------------------------------------------
    async def overdue(self, *, limit: int = 100) -> list[UUID]:
        """Live tasks whose deadline passed (see ``keys.py``, ``deadlines``), oldest first."""
        now = _ms(time.time())
        answers = await self._fan_out(
            lambda pipe, shard: pipe.zrangebyscore(
                self._keys.deadlines(shard), "-inf", now, 0, limit, withscores=True
            )
        )
        return [UUID(text(member)) for member, _ in _merged(answers, limit, newest_first=False)]

    async def pending_positions(
        self, *, older_than_seconds: float, limit: int = 100
    ) -> dict[UUID, str]:
        """PENDING tasks created over ``older_than_seconds`` ago whose publication was
        confirmed: task id -> the position of their message (topic/partition/offset)."""
        high = _us(utcnow()) - int(older_than_seconds * 1_000_000)
        pending = TaskState.PENDING.value
        answers = await self._fan_out(
            lambda pipe, shard: pipe.zrangebyscore(
                self._keys.index(shard, state=pending), "-inf", high, 0, limit, withscores=True
            )
        )
        members = [member for member, _ in _merged(answers, limit, newest_first=False)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.hget(self._keys.record(text(member)), "message")
            positions = await self._guard(pipe.execute())
        return {
            UUID(text(member)): text(position)
            for member, position in zip(members, positions, strict=True)
            if position
        }

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
        """Newest first, from the indexes that match the filters (no scan of the key space):
        the newest ``limit`` of each shard, merged.

        The time window applies to creation time, or to finish time when ``state`` is terminal
        (that index is ordered by it). Returns the page and the cursor of the next one.
        """
        name = state.value if state else None
        high: str = f"({cursor}" if cursor is not None else (str(_us(until)) if until else "+inf")
        low = str(_us(since)) if since else "-inf"
        answers = await self._fan_out(
            lambda pipe, shard: pipe.zrevrangebyscore(
                self._keys.index(shard, task=task, state=name),
                high,
                low,
                start=0,
                num=limit,
                withscores=True,
            )
        )
        entries = _merged(answers, limit, newest_first=True)
        async with self._redis.pipeline(transaction=False) as pipe:
            for member, _ in entries:
                pipe.hgetall(self._keys.record(text(member)))
            found = await self._guard(pipe.execute())
        records = [record_from_fields(fields) for fields in found if fields]
        gone = [member for (member, _), fields in zip(entries, found, strict=True) if not fields]
        if gone:  # expired since they were indexed
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in gone:
                    shard = shard_of(text(member))
                    pipe.zrem(self._keys.index(shard, task=task, state=name), member)
                await self._guard(pipe.execute())
        next_cursor = int(entries[-1][1]) if len(entries) == limit else None
        return records, next_cursor

    async def counts(self, task_names: list[str]) -> dict[str, dict[str, int]]:
        """Tasks per task name and state, from every shard's indexes (terminal ones trimmed
        first)."""
        cutoff = f"({_now().us - self._ttl * 1_000_000}"
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in SHARD_IDS:
                for name in task_names:
                    for state in TaskState:
                        key = self._keys.index(shard, task=name, state=state.value)
                        if state.is_terminal:
                            pipe.zremrangebyscore(key, "-inf", cutoff)
                        pipe.zcard(key)
            answers = iter(await self._guard(pipe.execute()))
        result = {name: {state.value: 0 for state in TaskState} for name in task_names}
        for _ in SHARD_IDS:
            for name in task_names:
                for state in TaskState:
                    if state.is_terminal:
                        next(answers)  # the trim's count
                    result[name][state.value] += int(next(answers))
        return result

    async def finished_per_second(self, seconds: int) -> dict[str, list[int]]:
        """For each terminal state, how many tasks reached it in each of the last ``seconds``
        seconds (oldest first, the current second last), summed over the shards' per-minute
        counters."""
        now = int(time.time())
        first = now - seconds + 1
        minutes = range(first // 60, now // 60 + 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in SHARD_IDS:
                for minute in minutes:
                    pipe.hgetall(self._keys.finished(shard, minute))
            counters = await self._guard(pipe.execute())
        result = {state.value: [0] * seconds for state in sorted(TERMINAL_STATES)}
        for counter in counters:
            for raw_field, count in counter.items():
                state, second = text(raw_field).split(":")
                if first <= int(second) <= now:
                    result[state][int(second) - first] += int(count)
        return result

    async def trim_expired(self, task_names: list[str], *, batch: int = 200) -> int:
        """Remove ids of expired records from every shard's by-creation indexes; returns how
        many."""
        cutoff = _now().us - self._ttl * 1_000_000
        answers = await self._fan_out(
            lambda pipe, shard: pipe.zrangebyscore(
                self._keys.index(shard), "-inf", cutoff, start=0, num=batch
            )
        )
        candidates = [member for members in answers for member in members]
        if not candidates:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in candidates:
                pipe.exists(self._keys.record(text(member)))
            alive = await self._guard(pipe.execute())
        gone = [m for m, exists in zip(candidates, alive, strict=True) if not exists]
        by_shard: dict[int, list[bytes]] = defaultdict(list)
        for member in gone:
            by_shard[shard_of(text(member))].append(member)
        if by_shard:
            async with self._redis.pipeline(transaction=False) as pipe:
                for shard, members in by_shard.items():
                    pipe.zrem(self._keys.index(shard), *members)
                    for name in task_names:
                        pipe.zrem(self._keys.index(shard, task=name), *members)
                await self._guard(pipe.execute())
        return len(gone)

    # --- helpers -------------------------------------------------------------------------
    async def _fan_out(self, command: Any) -> list[Any]:
        """``command(pipe, shard)`` queued for every shard in one pipeline; the answers in
        shard order."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in SHARD_IDS:
                command(pipe, shard)
            answers: list[Any] = await self._guard(pipe.execute())
        return answers

    def _layout_keys(
        self,
        layout: Layout,
        task_id: UUID,
        *,
        task: str | None = None,
        target: TaskState | None = None,
        clock: _Clock | None = None,
        idempotency_key: str | None = None,
        workflow_id: UUID | None = None,
    ) -> list[str]:
        return layout.resolve(
            self._keys,
            task_id,
            task=task,
            target=target,
            minute=None if clock is None else clock.seconds // 60,
            idempotency_key=idempotency_key,
            workflow_id=workflow_id,
        )

    def _common_args(self, clock: _Clock) -> list[Any]:
        return [
            str(clock.us),
            str(clock.us - self._ttl * 1_000_000),
            str(clock.seconds),
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
        except (RedisError, RedisClusterException, OSError) as error:
            raise redis_error(error) from error


def _merged(
    answers: Iterable[list[tuple[bytes, float]]], limit: int, *, newest_first: bool
) -> list[tuple[bytes, float]]:
    """The first ``limit`` of several shards' (member, score) lists, each already in order."""
    merged = heapq.merge(*answers, key=lambda entry: entry[1], reverse=newest_first)
    return [entry for _, entry in zip(range(limit), merged, strict=False)]


def _now() -> _Clock:
    return _Clock(time.time_ns() // 1000)


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _ms(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1000)


def _request_hash(task: str, payload: dict[str, JsonValue]) -> str:
    canonical = json.dumps([task, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
