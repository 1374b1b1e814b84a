"""The task state store on Redis.

Every write goes through one Lua script, so checking the transition, writing the fields,
raising the version, appending the event and setting the expiry are a single atomic step.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from pydantic import JsonValue
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.core.errors import (
    AlreadyRunningError,
    BackendUnavailableError,
    IdempotencyConflictError,
    InvalidTransitionError,
    TaskNotFoundError,
)
from services.core.keys import RedisKeys
from services.core.models import Progress, TaskError, TaskRecord, utcnow
from services.core.settings import Settings
from services.core.states import TERMINAL_STATES, TRANSITIONS, TaskState

FOLLOW_BLOCK_SECONDS: Final = 15
"""How long ``follow`` waits on Redis for the next write before yielding None; the client
it reads with needs a socket timeout longer than this."""

EVENTS_MAX_LEN: Final = 1000
"""Approximate cap on one task's event stream (progress reports can be many)."""

# Fields stored as plain strings or integers; every other field holds JSON.
_RAW_FIELDS: Final = frozenset({"status", "version", "attempts", "delivery", "created_us"})

REDIS_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)


def _lua_table(mapping: Mapping[TaskState, frozenset[TaskState]]) -> str:
    rows = []
    for source, targets in mapping.items():
        inner = ", ".join(f"{target.value} = true" for target in sorted(targets))
        rows.append(f"{source.value} = {{{inner}}}")
    return "{" + ", ".join(rows) + "}"


_TERMINAL_LUA = "{" + ", ".join(f"{s.value} = true" for s in sorted(TERMINAL_STATES)) + "}"

_COMMON_LUA = f"""
local allowed = {_lua_table(TRANSITIONS)}
local terminal = {_TERMINAL_LUA}
-- Common ARGV: key prefix, now (µs), expiry cutoff (µs), now (s), ttl (s), stream max length.
local prefix, now_us, cutoff_us = ARGV[1], ARGV[2], ARGV[3]
local now_s, ttl, maxlen = ARGV[4], ARGV[5], ARGV[6]
local FIELDS_FROM = 9

-- Listing indexes, kept in the same atomic write: every task by creation time, by task name,
-- by state and by both. Live states are ordered by creation; terminal ones by the time they
-- finished, so they are trimmed exactly when their records expire.
local function reindex(id, task, created, previous, status)
  if not previous then
    redis.call('ZADD', prefix .. 'idx:all', created, id)
    redis.call('ZADD', prefix .. 'idx:task:' .. task, created, id)
  end
  if previous == status then return end
  if previous then
    redis.call('ZREM', prefix .. 'idx:state:' .. previous, id)
    redis.call('ZREM', prefix .. 'idx:task:' .. task .. ':state:' .. previous, id)
  end
  local score = created
  if terminal[status] then score = now_us end
  local by_state = prefix .. 'idx:state:' .. status
  local by_both = prefix .. 'idx:task:' .. task .. ':state:' .. status
  for _, key in ipairs({{by_state, by_both}}) do
    redis.call('ZADD', key, score, id)
    if terminal[status] then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff_us) end
  end
  if terminal[status] then
    local rate = prefix .. 'rate:' .. status .. ':' .. now_s
    redis.call('INCR', rate)
    redis.call('EXPIRE', rate, 3600)
  end
end

local function write(record, events, previous, status)
  redis.call('HSET', record, 'status', status)
  for i = FIELDS_FROM, #ARGV, 2 do
    redis.call('HSET', record, ARGV[i], ARGV[i + 1])
  end
  redis.call('HINCRBY', record, 'version', 1)
  local id = cjson.decode(redis.call('HGET', record, 'id'))
  local task = cjson.decode(redis.call('HGET', record, 'task'))
  reindex(id, task, redis.call('HGET', record, 'created_us'), previous, status)
  local flat = redis.call('HGETALL', record)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(flat))
  if terminal[status] then
    redis.call('EXPIRE', record, ttl)
    redis.call('EXPIRE', events, ttl)
  else
    redis.call('PERSIST', record)
    redis.call('PERSIST', events)
  end
  return flat
end
"""

# KEYS: record, events, unconfirmed set, idempotency key ('' for none).
# ARGV: common (1-6), unconfirmed deadline, idempotency value, field/value pairs.
# Returns {'ok', flat record} | {'exists', ''} | {'duplicate', idempotency value}.
CREATE_SCRIPT: Final = (
    _COMMON_LUA
    + """
if KEYS[4] ~= '' then
  local previous = redis.call('GET', KEYS[4])
  if previous then return {'duplicate', previous} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', ''} end
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[8], 'EX', ttl) end
redis.call('HSET', KEYS[1], 'created_us', now_us)
local flat = write(KEYS[1], KEYS[2], false, 'PENDING')
redis.call('ZADD', KEYS[3], ARGV[7], cjson.decode(redis.call('HGET', KEYS[1], 'id')))
return {'ok', flat}
"""
)

# KEYS: record, events, unconfirmed set.
# ARGV: common (1-6), new status, delivery starting an attempt ('' if none), field/value pairs.
# Returns {'ok', flat record} | {'missing', ''} | {'refused', current status}
#       | {'running', delivery that runs it}.
UPDATE_SCRIPT: Final = (
    _COMMON_LUA
    + """
local status, delivery = ARGV[7], ARGV[8]
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {'missing', ''} end
if not allowed[current][status] then return {'refused', current} end
if delivery ~= '' then
  -- Starting an attempt. A task already running from another delivery (a duplicate copy of
  -- its message) is left alone; the same delivery again (after a crash) restarts it.
  local holder = redis.call('HGET', KEYS[1], 'delivery')
  if current == 'PROGRESS' and holder and holder ~= delivery then
    return {'running', holder}
  end
  redis.call('HSET', KEYS[1], 'delivery', delivery)
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
-- Any write means the task's message was seen (or the task settled): the sweeper lets it be.
redis.call('ZREM', KEYS[3], cjson.decode(redis.call('HGET', KEYS[1], 'id')))
return {'ok', write(KEYS[1], KEYS[2], current, status)}
"""
)


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


class TaskStore:
    """Reads and writes task records. One instance per process, sharing one Redis pool."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        result_ttl_seconds: int,
        publish_deadline_seconds: float = 300.0,
        streams: Redis | None = None,
    ) -> None:
        self._redis = redis
        # ``follow`` blocks on a connection for seconds at a time; a client of its own keeps
        # many followers from taking every connection requests need.
        self._streams = streams or redis
        self._keys = RedisKeys(namespace)
        self._ttl = result_ttl_seconds
        self._publish_deadline = publish_deadline_seconds
        self._create = redis.register_script(CREATE_SCRIPT)
        self._update = redis.register_script(UPDATE_SCRIPT)

    @classmethod
    def from_settings(
        cls, redis: Redis, settings: Settings, *, streams: Redis | None = None
    ) -> TaskStore:
        return cls(
            redis,
            namespace=settings.namespace,
            result_ttl_seconds=settings.result_ttl_seconds,
            publish_deadline_seconds=settings.publish_deadline_seconds,
            streams=streams,
        )

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except REDIS_ERRORS:
            return False

    async def create(
        self,
        task_id: UUID,
        task: str,
        payload: dict[str, JsonValue],
        *,
        idempotency_key: str | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Store a new PENDING record; returns (record, created).

        With an ``idempotency_key`` already used for the same request, returns that earlier
        task's record and False; used for a different request, raises IdempotencyConflictError.
        """
        now = utcnow()
        fields: dict[str, Any] = {  # 'id' first: the script reads it by position
            "id": str(task_id),
            "task": task,
            "payload": payload,
            "created_at": now,
            "updated_at": now,
            "attempts": 0,
        }
        request_hash = _request_hash(task, payload)
        idempotency = self._keys.idempotency(idempotency_key) if idempotency_key else ""
        args: list[Any] = [
            *self._common_args(),
            time.time() + self._publish_deadline,
            f"{task_id} {request_hash}",
            *_encode_fields(fields),
        ]
        keys = [
            self._keys.record(task_id),
            self._keys.events(task_id),
            self._keys.unconfirmed,
            idempotency,
        ]
        outcome, detail = await self._guard(self._create(keys=keys, args=args))
        outcome = _decode(outcome)
        if outcome == "ok":
            return record_from_fields(_flat_to_mapping(detail)), True
        if outcome == "duplicate":
            earlier_id, earlier_hash = _decode(detail).split(" ")
            if earlier_hash != request_hash or idempotency_key is None:
                raise IdempotencyConflictError(idempotency_key or "", task_id=earlier_id)
            return await self.get(UUID(earlier_id)), False
        raise InvalidTransitionError(str(task_id), current="PENDING", requested="PENDING")

    async def confirm_published(self, task_id: UUID) -> None:
        """The broker acknowledged the task's message: the sweeper must leave it alone."""
        await self._guard(self._redis.zrem(self._keys.unconfirmed, str(task_id)))

    async def unconfirmed_overdue(self, *, limit: int = 100) -> list[UUID]:
        """PENDING tasks whose publication was never confirmed within the deadline."""
        members = await self._guard(
            self._redis.zrangebyscore(self._keys.unconfirmed, "-inf", time.time(), 0, limit)
        )
        return [UUID(_decode(member)) for member in members]

    async def forget_unconfirmed(self, task_id: UUID) -> None:
        await self._guard(self._redis.zrem(self._keys.unconfirmed, str(task_id)))

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
    ) -> TaskRecord:
        """Move a task to ``status``; refused (InvalidTransitionError) if the table forbids it.

        ``start_delivery`` (topic/partition/offset of the message) starts a new attempt; it is
        refused with AlreadyRunningError while another delivery's attempt runs.
        """
        fields: dict[str, Any] = {"updated_at": utcnow()}
        if progress is not None:
            fields["progress"] = progress.model_dump(mode="json")
        if status is TaskState.COMPLETE:
            fields["result"] = result
        if error is not None:
            fields["error"] = error.model_dump(mode="json")
        fields["retry_at"] = retry_at
        args: list[Any] = [
            *self._common_args(),
            status.value,
            start_delivery or "",
            *_encode_fields(fields),
        ]
        keys = [self._keys.record(task_id), self._keys.events(task_id), self._keys.unconfirmed]
        outcome, detail = await self._guard(self._update(keys=keys, args=args))
        outcome = _decode(outcome)
        if outcome == "ok":
            return record_from_fields(_flat_to_mapping(detail))
        if outcome == "missing":
            raise TaskNotFoundError(str(task_id))
        if outcome == "running":
            raise AlreadyRunningError(str(task_id), delivery=_decode(detail))
        raise InvalidTransitionError(str(task_id), current=_decode(detail), requested=status.value)

    async def get(self, task_id: UUID) -> TaskRecord:
        fields = await self._guard(self._redis.hgetall(self._keys.record(task_id)))
        if not fields:
            raise TaskNotFoundError(str(task_id))
        return record_from_fields(fields)

    async def delete(self, task_id: UUID, *, idempotency_key: str | None = None) -> None:
        """Remove a record whose message never reached Kafka (no orphan PENDING records)."""
        keys = [self._keys.record(task_id), self._keys.events(task_id)]
        if idempotency_key:
            keys.append(self._keys.idempotency(idempotency_key))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*keys)
            pipe.zrem(self._keys.unconfirmed, str(task_id))
            await self._guard(pipe.execute())

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
            answer = await self._guard(self._streams.xread({key: last_id}, block=block_ms))
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
        ]

    async def _guard(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except REDIS_ERRORS as exc:
            raise BackendUnavailableError("redis", str(exc) or type(exc).__name__) from exc


def _encode_fields(fields: dict[str, Any]) -> list[str]:
    encoded: list[str] = []
    for name, value in fields.items():
        encoded += [name, json.dumps(value, default=_json_default)]
    return encoded


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _request_hash(task: str, payload: dict[str, JsonValue]) -> str:
    canonical = json.dumps([task, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
