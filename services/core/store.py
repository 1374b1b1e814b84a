"""The task state store on Redis.

Every write goes through one Lua script, so checking the transition, writing the fields,
raising the version, appending the event and setting the expiry are a single atomic step.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from pydantic import JsonValue
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.core.errors import (
    BackendUnavailableError,
    InvalidTransitionError,
    TaskNotFoundError,
)
from services.core.keys import RedisKeys
from services.core.models import Progress, TaskError, TaskRecord, utcnow
from services.core.states import TERMINAL_STATES, TRANSITIONS, TaskState

EVENTS_MAX_LEN: Final = 1000
"""Approximate cap on one task's event stream (progress reports can be many)."""

# Fields stored as plain strings or integers; every other field holds JSON.
_RAW_FIELDS: Final = frozenset({"status", "version", "attempts"})

REDIS_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)


def _lua_table(mapping: Mapping[TaskState, frozenset[TaskState]]) -> str:
    rows = []
    for source, targets in mapping.items():
        inner = ", ".join(f"{target.value} = true" for target in sorted(targets))
        rows.append(f"{source.value} = {{{inner}}}")
    return "{" + ", ".join(rows) + "}"


_TERMINAL_LUA = "{" + ", ".join(f"{s.value} = true" for s in sorted(TERMINAL_STATES)) + "}"

# KEYS: record hash, event stream.
# ARGV: mode ('create' | 'update'), new status, ttl once terminal, 1 to count an attempt,
#       stream max length, then field/value pairs.
# Returns {'ok', <flat record>} or {'exists' | 'missing' | 'refused', <current status>}.
WRITE_SCRIPT: Final = f"""
local allowed = {_lua_table(TRANSITIONS)}
local terminal = {_TERMINAL_LUA}
local current = redis.call('HGET', KEYS[1], 'status')
if ARGV[1] == 'create' then
  if current then return {{'exists', current}} end
else
  if not current then return {{'missing', ''}} end
  if not allowed[current][ARGV[2]] then return {{'refused', current}} end
end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
local flat = redis.call('HGETALL', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', unpack(flat))
if terminal[ARGV[2]] then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
return {{'ok', flat}}
"""


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

    def __init__(self, redis: Redis, *, namespace: str, result_ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = RedisKeys(namespace)
        self._ttl = result_ttl_seconds
        self._write = redis.register_script(WRITE_SCRIPT)

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except REDIS_ERRORS:
            return False

    async def create(self, task_id: UUID, task: str, payload: dict[str, JsonValue]) -> TaskRecord:
        """Store a new PENDING record."""
        now = utcnow()
        fields: dict[str, Any] = {
            "id": str(task_id),
            "task": task,
            "payload": payload,
            "created_at": now,
            "updated_at": now,
            "attempts": 0,
        }
        return await self._run("create", task_id, TaskState.PENDING, fields)

    async def transition(
        self,
        task_id: UUID,
        status: TaskState,
        *,
        progress: Progress | None = None,
        result: JsonValue = None,
        error: TaskError | None = None,
        start_attempt: bool = False,
    ) -> TaskRecord:
        """Move a task to ``status``; refused (InvalidTransitionError) if the table forbids it."""
        fields: dict[str, Any] = {"updated_at": utcnow()}
        if progress is not None:
            fields["progress"] = progress.model_dump(mode="json")
        if status is TaskState.COMPLETE:
            fields["result"] = result
        if error is not None:
            fields["error"] = error.model_dump(mode="json")
        return await self._run("update", task_id, status, fields, start_attempt=start_attempt)

    async def get(self, task_id: UUID) -> TaskRecord:
        fields = await self._guard(self._redis.hgetall(self._keys.record(task_id)))
        if not fields:
            raise TaskNotFoundError(str(task_id))
        return record_from_fields(fields)

    async def delete(self, task_id: UUID) -> None:
        """Remove a record whose message never reached Kafka (no orphan PENDING records)."""
        await self._guard(
            self._redis.delete(self._keys.record(task_id), self._keys.events(task_id))
        )

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

    async def _run(
        self,
        mode: str,
        task_id: UUID,
        status: TaskState,
        fields: dict[str, Any],
        *,
        start_attempt: bool = False,
    ) -> TaskRecord:
        args: list[Any] = [mode, status.value, self._ttl, int(start_attempt), EVENTS_MAX_LEN]
        for name, value in fields.items():
            args += [name, json.dumps(value, default=_json_default)]
        keys = [self._keys.record(task_id), self._keys.events(task_id)]
        outcome, detail = await self._guard(self._write(keys=keys, args=args))
        outcome = _decode(outcome)
        if outcome == "ok":
            return record_from_fields(_flat_to_mapping(detail))
        if outcome == "missing":
            raise TaskNotFoundError(str(task_id))
        raise InvalidTransitionError(
            str(task_id), current=_decode(detail) or "nothing", requested=status.value
        )

    async def _guard(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except REDIS_ERRORS as exc:
            raise BackendUnavailableError("redis", str(exc) or type(exc).__name__) from exc


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
