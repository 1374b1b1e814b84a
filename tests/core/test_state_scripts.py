"""Every key a state script touches is one it declared in KEYS.

Redis Cluster checks declared keys only: a key built inside a script, or touched without
being declared, works on one server and breaks a cluster (CROSSSLOT, or a write to the wrong
node while its slot moves). Here a private Redis server's MONITOR shows each command a script
ran; ``COMMAND GETKEYS`` names its keys, which must be among the KEYS of the EVALSHA that ran
it. Every script is run, through the store, on every path of a task's life.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from devstack import processes
from devstack import redis as devstack_redis
from services.core.keys import new_task_id
from services.core.models import Progress, TaskError, TaskMessage
from services.core.states import TaskState
from services.core.store import TaskStore

DONE = "monitor-done"
KEYLESS = {b"TIME"}
QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')
ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def unquote(token: bytes) -> bytes:
    """One MONITOR argument, as Redis escaped it (sdscatrepr), back to its bytes."""
    out, i = bytearray(), 0
    while i < len(token):
        if token[i : i + 1] == b"\\":
            escaped = token[i + 1 : i + 2]
            if escaped == b"x":
                out += bytes([int(token[i + 2 : i + 4], 16)])
                i += 4
                continue
            out += ESCAPES.get(escaped, escaped)
            i += 2
        else:
            out += token[i : i + 1]
            i += 1
    return bytes(out)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[Redis]:
    server = await asyncio.to_thread(devstack_redis.start, tmp_path, preferred_port=None)
    try:
        await asyncio.to_thread(devstack_redis.wait_ready, server)
        client = Redis(port=server.port)
        yield client
        await client.aclose()
    finally:
        await asyncio.to_thread(processes.stop, server.pid)


async def monitor(port: int, started: asyncio.Event) -> list[bytes]:
    """Raw MONITOR lines until the DONE marker."""
    lines: list[bytes] = []
    client = Redis(port=port)
    async with client.monitor() as watching:
        started.set()
        while True:
            line = await watching.connection.read_response()
            line = line if isinstance(line, bytes) else str(line).encode()
            if DONE.encode() in line:
                break
            lines.append(line)
    await client.aclose()
    return lines


async def a_life_through_every_script(store: TaskStore) -> None:
    key = f"order-{uuid.uuid4()}"
    task_id = new_task_id(key)
    await store.create(task_id, "flaky", {"fail_times": 1}, idempotency_key=key)
    await store.confirm_published(task_id, position="t/0/1")
    await store.create(new_task_id(key), "flaky", {"fail_times": 1}, idempotency_key=key)
    await store.transition(task_id, TaskState.PROGRESS, task="flaky", start_delivery="t/0/1")
    await store.transition(
        task_id, TaskState.PROGRESS, task="flaky", progress=Progress(percent=50), attempt=1
    )
    await store.renew_leases({task_id: 1})
    failed = TaskError(type="FlakyError", message="first")
    await store.transition(task_id, TaskState.RETRY, task="flaky", error=failed, attempt=1)
    await store.transition(task_id, TaskState.PROGRESS, task="flaky", start_delivery="r/0/1")
    await store.transition(task_id, TaskState.COMPLETE, task="flaky", result={"ok": 1}, attempt=2)
    await store.history(task_id)
    async for _ in store.follow(task_id):
        break

    cancelled = new_task_id()
    await store.create(cancelled, "sleep", {})
    await store.transition(cancelled, TaskState.CANCELLED)  # reads the task name first

    withdrawn_key = f"gone-{uuid.uuid4()}"
    withdrawn = new_task_id(withdrawn_key)
    await store.create(withdrawn, "noop", {}, idempotency_key=withdrawn_key)
    await store.withdraw(withdrawn, task="noop", idempotency_key=withdrawn_key)

    restored = TaskMessage(id=new_task_id(), task="noop", payload={})
    await store.restore(restored)
    await store.confirm_published(restored.id, position="t/1/7")
    await store.reclaim(restored.id, lost_position="t/1/7")
    await store.reclaim(restored.id)


async def test_every_key_a_script_touches_is_declared(private_redis: Redis) -> None:
    port = private_redis.connection_pool.connection_kwargs["port"]
    store = TaskStore(private_redis, namespace="scripts", result_ttl_seconds=60, lease_seconds=0)
    started = asyncio.Event()
    watching = asyncio.create_task(monitor(port, started))
    await started.wait()
    await a_life_through_every_script(store)
    await private_redis.echo(DONE)
    lines = await asyncio.wait_for(watching, timeout=10)

    # MONITOR shows a script's call first, then each command the script runs.
    checked = 0
    declared: set[bytes] | None = None
    for line in lines:
        args = [unquote(token) for token in QUOTED.findall(line)]
        if b"[0 lua]" not in line:
            is_script = args[0].upper() == b"EVALSHA"
            declared = set(args[3 : 3 + int(args[2])]) if is_script else None
            continue
        assert declared is not None, f"a script command outside a script: {args}"
        if args[0].upper() in KEYLESS:
            continue
        touched = await private_redis.command_getkeys(*args)
        undeclared = {k.encode() if isinstance(k, str) else k for k in touched} - declared
        assert not undeclared, f"{args[0]!r} touched {undeclared} (declared {declared})"
        checked += 1
    assert checked > 150, "the scripts' commands must have been seen"
