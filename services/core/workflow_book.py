"""Where workflows are kept (Redis): their record, their event stream and the outbox of
workflows with a step to submit. Every write is one script of ``workflow_scripts.py``."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from services.core import workflow_scripts
from services.core.errors import WorkflowFinishedError, WorkflowNotFoundError
from services.core.keys import SHARDS, RedisKeys, shard_of
from services.core.redis_client import RedisClient
from services.core.states import TaskState
from services.core.workflows import (
    FailedMember,
    WorkflowEvent,
    WorkflowKind,
    WorkflowMember,
    WorkflowRecord,
    WorkflowSpec,
    WorkflowState,
)

Guard = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Idempotency:
    """A workflow submission's Idempotency-Key and the hash of what it asked for."""

    key: str
    request_hash: str

    @classmethod
    def of(cls, key: str, spec: WorkflowSpec) -> Idempotency:
        # "workflow" first: the same key used for a task (whose hash covers name and
        # payload) never matches.
        canonical = json.dumps(["workflow", spec.model_dump(mode="json")], sort_keys=True)
        return cls(key, hashlib.sha256(canonical.encode()).hexdigest()[:32])

    def value(self, workflow_id: UUID) -> str:
        return f"{workflow_id} {self.request_hash}"


@dataclass(frozen=True)
class WorkflowFields:
    """A workflow's hash as stored, for the engine to decide what is due."""

    id: UUID
    spec: WorkflowSpec
    status: WorkflowState
    done: int
    wake: str
    submitted: dict[int, UUID]
    finished: dict[int, TaskState]
    results: dict[int, Any]
    failed: bool

    @property
    def total(self) -> int:
        return len(self.spec.tasks)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _moment(us: str) -> datetime:
    return datetime.fromtimestamp(int(us) / 1_000_000, UTC)


class WorkflowBook:
    def __init__(
        self,
        redis: RedisClient,
        streams: RedisClient,
        keys: RedisKeys,
        guard: Guard,
        *,
        ttl_seconds: int,
        block_ms: int,
    ) -> None:
        self._redis = redis
        self._streams = streams
        self._keys = keys
        self._guard = guard
        self._ttl = ttl_seconds
        self._block_ms = block_ms
        self._create = redis.register_script(workflow_scripts.CREATE)
        self._attach = redis.register_script(workflow_scripts.ATTACH)
        self._settle = redis.register_script(workflow_scripts.SETTLE)
        self._end = redis.register_script(workflow_scripts.END)
        self._release = redis.register_script(workflow_scripts.RELEASE)

    async def create(
        self, workflow_id: UUID, spec: WorkflowSpec, *, idempotency: Idempotency | None = None
    ) -> str | None:
        """Store a RUNNING workflow, due in the outbox (its first steps are to submit).

        With ``idempotency`` the workflow claims its key in the same script (the id must be
        in the key's shard: ``keys.new_task_id(key)``); if the key is taken, nothing is
        stored and the key's value (``<workflow id> <request hash>``) is returned."""
        keys = [
            self._keys.workflow(workflow_id),
            self._keys.workflow_events(workflow_id),
            self._keys.workflows_due(shard_of(workflow_id)),
        ]
        args: list[str | int] = [
            str(workflow_id),
            str(time.time_ns() // 1000),
            spec.kind.value,
            len(spec.tasks),
            "1" if spec.call_on_failure else "0",
            spec.model_dump_json(),
        ]
        if idempotency is not None:
            keys.append(self._keys.idempotency(idempotency.key))
            args += [idempotency.value(workflow_id), self._ttl]
        outcome, detail = await self._guard(self._create(keys=keys, args=args))
        return _text(detail) if _text(outcome) == "duplicate" else None

    async def release(self, workflow_id: UUID, idempotency: Idempotency) -> None:
        """Free the key a workflow claimed, if it still holds that workflow."""
        await self._guard(
            self._release(
                keys=[self._keys.idempotency(idempotency.key)],
                args=[idempotency.value(workflow_id)],
            )
        )

    async def fields(self, workflow_id: UUID) -> WorkflowFields:
        raw = await self._guard(self._redis.hgetall(self._keys.workflow(workflow_id)))
        if not raw:
            raise WorkflowNotFoundError(str(workflow_id))
        data = {_text(k): _text(v) for k, v in raw.items()}
        return WorkflowFields(
            id=workflow_id,
            spec=WorkflowSpec.model_validate_json(data["spec"]),
            status=WorkflowState(data["status"]),
            done=int(data["done"]),
            wake=data["wake"],
            submitted={int(k[2:]): UUID(v) for k, v in data.items() if k.startswith("m:")},
            finished={int(k[2:]): TaskState(v) for k, v in data.items() if k.startswith("f:")},
            results={int(k[2:]): json.loads(v) for k, v in data.items() if k.startswith("r:")},
            failed="failed" in data,
        )

    async def read(self, workflow_id: UUID) -> WorkflowRecord:
        """The workflow as it stands, with the live state of its submitted members."""
        raw = await self._guard(self._redis.hgetall(self._keys.workflow(workflow_id)))
        if not raw:
            raise WorkflowNotFoundError(str(workflow_id))
        data = {_text(k): _text(v) for k, v in raw.items()}
        spec = WorkflowSpec.model_validate_json(data["spec"])
        submitted = {int(k[2:]): UUID(v) for k, v in data.items() if k.startswith("m:")}
        finished = {int(k[2:]): TaskState(v) for k, v in data.items() if k.startswith("f:")}
        live_ids = [step for step in sorted(submitted) if step not in finished]
        async with self._redis.pipeline(transaction=False) as pipe:
            for step in live_ids:
                pipe.hget(self._keys.record(submitted[step]), "status")
            live = dict(zip(live_ids, await self._guard(pipe.execute()), strict=True))
        members = [
            WorkflowMember(
                step=step,
                task=signature.task,
                task_id=submitted.get(step),
                status=finished.get(step)
                or (TaskState(_text(live[step])) if live.get(step) else None),
                is_callback=step == len(spec.tasks),
            )
            for step, signature in enumerate(spec.steps)
        ]
        total = len(spec.tasks)
        results = [
            json.loads(data[f"r:{step}"]) if f"r:{step}" in data else None for step in range(total)
        ]
        status = WorkflowState(data["status"])
        result: Any = json.loads(data["result"]) if "result" in data else None
        if spec.kind is WorkflowKind.GROUP and status is WorkflowState.COMPLETE:
            result = results
        return WorkflowRecord(
            id=workflow_id,
            kind=spec.kind,
            status=status,
            total=total,
            done=int(data["done"]),
            members=members[:total],
            callback=members[total] if spec.callback else None,
            results=results,
            result=result,
            failed=FailedMember.model_validate_json(data["failed"]) if "failed" in data else None,
            call_on_failure=spec.call_on_failure,
            version=int(data["version"]),
            created_at=_moment(data["created_us"]),
            updated_at=_moment(data["updated_us"]),
        )

    async def attach(self, workflow_id: UUID, step: int, task_id: UUID) -> WorkflowState | None:
        """Record a submitted step's task; returns the workflow's status (None: it is gone)."""
        keys = [self._keys.workflow(workflow_id), self._keys.workflow_events(workflow_id)]
        status = await self._guard(
            self._attach(keys=keys, args=[step, str(task_id), str(time.time_ns() // 1000)])
        )
        return WorkflowState(_text(status)) if status else None

    async def settle(self, workflow_id: UUID, wake: str) -> bool:
        """Leave the outbox, unless a member woke the workflow since ``wake`` was read."""
        keys = [self._keys.workflow(workflow_id), self._keys.workflows_due(shard_of(workflow_id))]
        return bool(await self._guard(self._settle(keys=keys, args=[str(workflow_id), wake])))

    async def end(
        self, workflow_id: UUID, status: WorkflowState, *, failed: FailedMember | None = None
    ) -> list[UUID]:
        """End a RUNNING workflow (CANCELLED, or FAILURE when a step cannot be submitted);
        returns its submitted members' task ids. WorkflowNotFoundError, WorkflowFinishedError."""
        keys = [
            self._keys.workflow(workflow_id),
            self._keys.workflow_events(workflow_id),
            self._keys.workflows_due(shard_of(workflow_id)),
        ]
        args: list[str | int] = [
            str(workflow_id),
            str(time.time_ns() // 1000),
            self._ttl,
            status.value,
            failed.model_dump_json() if failed else "",
        ]
        answer = await self._guard(self._end(keys=keys, args=args))
        outcome = _text(answer[0])
        if outcome == "missing":
            raise WorkflowNotFoundError(str(workflow_id))
        if outcome == "refused":
            raise WorkflowFinishedError(str(workflow_id), status=_text(answer[1]))
        return [UUID(_text(member)) for member in answer[1:]]

    async def due(self, *, older_than_seconds: float, limit: int = 100) -> list[UUID]:
        """Workflows whose due step has waited over ``older_than_seconds`` (the outbox)."""
        high = int((time.time() - older_than_seconds) * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.zrangebyscore(self._keys.workflows_due(shard), "-inf", high, 0, limit)
            answers = await self._guard(pipe.execute())
        return [UUID(_text(member)) for members in answers for member in members][:limit]

    async def follow(self, workflow_id: UUID) -> AsyncGenerator[WorkflowEvent | None, None]:
        """Yield each change of the workflow from its start, until it ends (None while
        ``block_ms`` passes without one, for keep-alives)."""
        key = self._keys.workflow_events(workflow_id)
        last_id = "0-0"
        if not await self._guard(self._streams.exists(key)):
            raise WorkflowNotFoundError(str(workflow_id))
        while True:
            answer = await self._guard(
                self._streams.xread({key: last_id}, block=self._block_ms),
                seconds=self._block_ms / 1000 + 5,
            )
            if not answer:
                yield None
                continue
            for entry_id, fields in answer[0][1]:
                last_id = entry_id
                event = WorkflowEvent.model_validate(
                    {_text(k): _text(v) for k, v in fields.items()}
                )
                yield event
                if event.status.is_terminal:
                    return
