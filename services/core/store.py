"""The task state store on Redis.

Every write goes through one Lua script, so checking the transition, writing the fields,
raising the version, appending the event and setting the expiry are a single atomic step.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping
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
from services.core.states import TERMINAL_STATES, TRANSITIONS, TaskState

EVENTS_MAX_LEN: Final = 1000
"""Approximate cap on one task's event stream (progress reports can be many)."""

# Fields stored as plain strings or integers; every other field holds JSON.
_RAW_FIELDS: Final = frozenset({"status", "version", "attempts", "delivery"})

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
local function write(record, events, status, ttl, fields_from, maxlen)
  redis.call('HSET', record, 'status', status)
  for i = fields_from, #ARGV, 2 do
    redis.call('HSET', record, ARGV[i], ARGV[i + 1])
  end
  redis.call('HINCRBY', record, 'version', 1)
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
# ARGV: ttl, stream max length, unconfirmed deadline, idempotency value, field/value pairs.
# Returns {'ok', flat record} | {'exists', ''} | {'duplicate', idempotency value}.
CREATE_SCRIPT: Final = (
    _COMMON_LUA
    + """
if KEYS[4] ~= '' then
  local previous = redis.call('GET', KEYS[4])
  if previous then return {'duplicate', previous} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', ''} end
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[4], 'EX', ARGV[1]) end
redis.call('ZADD', KEYS[3], ARGV[3], cjson.decode(ARGV[6]))  -- field 'id' comes first
return {'ok', write(KEYS[1], KEYS[2], 'PENDING', ARGV[1], 5, ARGV[2])}
"""
)

# KEYS: record, events, unconfirmed set.
# ARGV: new status, ttl, stream max length, delivery starting an attempt ('' if none),
#       field/value pairs.
# Returns {'ok', flat record} | {'missing', ''} | {'refused', current status}
#       | {'running', delivery that runs it}.
UPDATE_SCRIPT: Final = (
    _COMMON_LUA
    + """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {'missing', ''} end
if not allowed[current][ARGV[1]] then return {'refused', current} end
if ARGV[4] ~= '' then
  -- Starting an attempt. A task already running from another delivery (a duplicate copy of
  -- its message) is left alone; the same delivery again (after a crash) restarts it.
  local holder = redis.call('HGET', KEYS[1], 'delivery')
  if current == 'PROGRESS' and holder and holder ~= ARGV[4] then
    return {'running', holder}
  end
  redis.call('HSET', KEYS[1], 'delivery', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
local id = redis.call('HGET', KEYS[1], 'id')
-- Any write means the task's message was seen (or the task settled): the sweeper lets it be.
redis.call('ZREM', KEYS[3], cjson.decode(id))
return {'ok', write(KEYS[1], KEYS[2], ARGV[1], ARGV[2], 5, ARGV[3])}
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
    ) -> None:
        self._redis = redis
        self._keys = RedisKeys(namespace)
        self._ttl = result_ttl_seconds
        self._publish_deadline = publish_deadline_seconds
        self._create = redis.register_script(CREATE_SCRIPT)
        self._update = redis.register_script(UPDATE_SCRIPT)

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
            self._ttl,
            EVENTS_MAX_LEN,
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
            status.value,
            self._ttl,
            EVENTS_MAX_LEN,
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

    async def follow(
        self, task_id: UUID, *, block_ms: int = 15_000
    ) -> AsyncIterator[TaskRecord | None]:
        """Yield the current record, then each later state write until a terminal state.

        Yields None when ``block_ms`` passes without a write, so callers can send keep-alives.
        Reading the stream from the entry of the current record means no write is missed
        between the first read and the wait.
        """
        key = self._keys.events(task_id)
        latest = await self._guard(self._redis.xrevrange(key, count=1))
        if not latest:
            raise TaskNotFoundError(str(task_id))
        last_id, fields = latest[0]
        record = record_from_fields(fields)
        yield record
        while not record.status.is_terminal:
            answer = await self._guard(self._redis.xread({key: last_id}, block=block_ms))
            if not answer:
                yield None
                continue
            for entry_id, entry_fields in answer[0][1]:
                last_id = entry_id
                record = record_from_fields(entry_fields)
                yield record

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


def _request_hash(task: str, payload: dict[str, JsonValue]) -> str:
    canonical = json.dumps([task, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
