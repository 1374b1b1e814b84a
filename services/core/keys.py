"""Every Redis key kafka-tasks writes, in one place: its prefix, how long it lives and which
hash slot it lands in (the arq way: one constants module, nothing spelled out elsewhere).

Cluster mode (Redis Cluster, Valkey, ElastiCache / Memorystore / Azure cluster mode) runs a
script only when every key it touches is declared and all of them hash to one slot. So the
key space is cut into ``SHARDS`` *shards*; every key carries its shard's hash tag
``{sNN.x}``, and a shard holds whole tasks together with the cross-task structures that
list them (indexes, deadlines, finish counters). Each write is then one script in one slot,
atomic as on a single Redis; whatever spans shards (listing, counts, the reaper's sweep) is
read with a fan-out over the ``SHARDS`` shards and merged. Standalone Redis runs the very
same keys and code (a tag is just part of a key's name there).

A task's shard is written into its id: the first two bytes of the UUID, modulo ``SHARDS``.
So any reader that knows an id knows its keys, and a create with an ``Idempotency-Key`` puts
its task in the key's shard (``new_task_id``): the key and the record it guards are in one
slot, and "look the key up, else create the record and claim the key" stays one atomic
script, as BullMQ keeps a custom job id and its job in one slot.

Every key starts with ``<namespace>:{<shard tag>}:``, then:

- ``task:<id>``: hash, the record. Live: no TTL; terminal: ``result_ttl_seconds``.
- ``events:<id>``: stream, one entry per write after the create with what it changed (none
  while the task is queued). Expires with its record.
- ``withdrawn:<id>``: string, a submission the API took back. ``result_ttl_seconds``.
- ``idempotency:<key>``: string ``<task or workflow id> <request hash>``.
  ``result_ttl_seconds``. In the key's shard, which is its task's or workflow's.
- ``deadlines``: sorted set, task ids by the time (ms) by which something must happen to
  them, or the reaper acts: a PENDING task's publication (until the API confirms it), a
  running attempt's lease (renewed by its worker), a retry's due time plus one lease, a
  FAILURE's dead letter (until it is written). No TTL; other terminal writes, and the
  written dead letter, remove their ids.
- ``idx:all``, ``idx:task:<name>``: sorted sets, ids by creation (µs). No TTL; the reaper
  removes ids whose records expired.
- ``idx:state:<S>``, ``idx:task:<name>:state:<S>``: sorted sets, ids by creation, terminal
  states by finish time (µs). No TTL; terminal ones are trimmed at the result TTL.
- ``finished:<minute>``: hash ``<S>:<epoch second>`` -> tasks that reached terminal state S.
  ``FINISHED_TTL_SECONDS``.

- ``timers``: sorted set, held-back task ids (a delay, a rate or concurrency limit) by due
  time (ms). No TTL; a released or settled task leaves it.
- ``workflow:<id>``, ``workflow-events:<id>``: a workflow's hash and stream, in its id's
  shard; its members' ids share their first two bytes with it, so they are in it too. No TTL
  while it runs; ``result_ttl_seconds`` once it ends.
- ``workflows-due``: sorted set, the outbox of workflows with a step to submit. No TTL.

One task's keys are in the shard of its id; the others are per shard. Outside the shards,
with a hash tag of their own: ``rate-limit:<task>`` (one key per script),
``{concurrency:<task>:<value>}:slots`` and ``:waiters`` (touched together), and
``{scheduler}:leader`` with ``{scheduler}:schedule:<name>`` (a tick moves only by the leader).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from services.core.topics import redis_key_prefix

SHARDS: Final = 24
"""How many shards the key space is cut into; fixed for good, since every task id carries
its shard (changing it strands every existing record). 24 shards spread evenly over 1, 2,
3, 4, 6, 8, 12 or 24 masters of an evenly split cluster (``redis-cli --cluster create``
and the managed services split the 16,384 slots in equal ranges), and a fan-out read costs
24 small commands, pipelined per node. It is also the most masters the write load can use."""

SHARD_TAGS: Final = (
    # One hash tag per shard, chosen so that shard i hashes to the middle of the i-th
    # twenty-fourth of the slot space (tests/core/test_keys.py checks it).
    "s00.39",  # slot 256
    "s01.29",  # slot 1157
    "s02.6",  # slot 1796
    "s03.140",  # slot 2512
    "s04.17",  # slot 3165
    "s05.29",  # slot 3700
    "s06.10",  # slot 4562
    "s07.152",  # slot 5029
    "s08.23",  # slot 5816
    "s09.51",  # slot 6617
    "s10.10",  # slot 7194
    "s11.26",  # slot 7995
    "s12.3",  # slot 8469
    "s13.111",  # slot 9124
    "s14.13",  # slot 9864
    "s15.61",  # slot 10729
    "s16.11",  # slot 11170
    "s17.124",  # slot 12116
    "s18.96",  # slot 12470
    "s19.51",  # slot 13192
    "s20.25",  # slot 14142
    "s21.53",  # slot 14555
    "s22.152",  # slot 15282
    "s23.33",  # slot 16149
)

FINISHED_TTL_SECONDS: Final = 3600
"""How long a shard's per-minute finish counters live (the dashboard shows five minutes)."""

_ID_PREFIXES_PER_SHARD: Final = 65536 // SHARDS


def shard_of(task_id: UUID | str) -> int:
    """The shard a task's keys live in: the id's first two bytes, modulo ``SHARDS``."""
    raw = task_id.bytes if isinstance(task_id, UUID) else UUID(task_id).bytes
    return int.from_bytes(raw[:2], "big") % SHARDS


def shard_of_idempotency_key(key: str) -> int:
    """The shard of an ``Idempotency-Key``: where it is stored, and where its task goes."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:2], "big") % SHARDS


def new_task_id(idempotency_key: str | None = None) -> UUID:
    """A random (version 4) task id, in the shard of ``idempotency_key`` if there is one,
    in a shard chosen uniformly otherwise. 106 of its bits stay random."""
    shard = (
        shard_of_idempotency_key(idempotency_key)
        if idempotency_key is not None
        else secrets.randbelow(SHARDS)
    )
    prefix = shard + SHARDS * secrets.randbelow(_ID_PREFIXES_PER_SHARD)
    return UUID(bytes=prefix.to_bytes(2, "big") + uuid.uuid4().bytes[2:])


@dataclass(frozen=True)
class RedisKeys:
    """The key names of one namespace."""

    namespace: str

    @property
    def prefix(self) -> str:
        return redis_key_prefix(self.namespace)

    def shard(self, shard: int) -> str:
        """Everything of one shard starts with this (its hash tag decides the slot)."""
        return f"{self.prefix}{{{SHARD_TAGS[shard]}}}:"

    # --- one task's keys (the id's shard) ------------------------------------------------
    def record(self, task_id: UUID | str) -> str:
        return f"{self.shard(shard_of(task_id))}task:{task_id}"

    def events(self, task_id: UUID | str) -> str:
        return f"{self.shard(shard_of(task_id))}events:{task_id}"

    def withdrawn(self, task_id: UUID | str) -> str:
        return f"{self.shard(shard_of(task_id))}withdrawn:{task_id}"

    def idempotency(self, key: str) -> str:
        return f"{self.shard(shard_of_idempotency_key(key))}idempotency:{key}"

    # --- a shard's cross-task structures -------------------------------------------------
    def deadlines(self, shard: int) -> str:
        return f"{self.shard(shard)}deadlines"

    def index(self, shard: int, *, task: str | None = None, state: str | None = None) -> str:
        """The listing index of one shard: every task, by task name, by state, or by both."""
        if task and state:
            return f"{self.shard(shard)}idx:task:{task}:state:{state}"
        if task:
            return f"{self.shard(shard)}idx:task:{task}"
        if state:
            return f"{self.shard(shard)}idx:state:{state}"
        return f"{self.shard(shard)}idx:all"

    def finished(self, shard: int, minute: int) -> str:
        """Finish counters of one shard for one epoch minute."""
        return f"{self.shard(shard)}finished:{minute}"

    # --- scanning (tests, the chaos checker) ---------------------------------------------
    @property
    def record_pattern(self) -> str:
        """A SCAN pattern matching every record of the namespace."""
        return f"{self.prefix}{{*}}:task:*"

    @property
    def idempotency_pattern(self) -> str:
        return f"{self.prefix}{{*}}:idempotency:*"

    @staticmethod
    def after_kind(key: str, kind: str) -> str:
        """What follows ``:<kind>:`` in a key: a record's task id, an idempotency key."""
        return key.split(f"}}:{kind}:", 1)[1]

    # --- held-back tasks, limits, schedules, workflows ----------------------------------
    def timers(self, shard: int) -> str:
        """Sorted set of one shard's held-back task ids (a delay, a rate or concurrency
        limit), scored by the time (ms) they are due to be queued; the workers' timer loop
        releases them. No TTL; a released or settled task leaves it."""
        return f"{self.shard(shard)}timers"

    def rate_bucket(self, task: str) -> str:
        """String: the task's rate limit as one timestamp (µs), the next free start slot
        (GCRA); a script of this one key. Expires a second after that slot passes."""
        return f"{self.prefix}rate-limit:{task}"

    def concurrency_slots(self, task: str, value: str) -> str:
        """Sorted set of the task ids running for one value of a concurrency key, scored by
        their lease end (ms); tagged with its waiters, which its scripts touch with it."""
        return f"{self.prefix}{{concurrency:{task}:{value}}}:slots"

    def concurrency_waiters(self, task: str, value: str) -> str:
        """List of task ids waiting for a slot of that key, first to wake first."""
        return f"{self.prefix}{{concurrency:{task}:{value}}}:waiters"

    @property
    def scheduler_leader(self) -> str:
        """String: the token of the worker whose scheduler fires ticks; expires
        ``scheduler_lease_seconds`` after its last renewal. Tagged with the schedules."""
        return f"{self.prefix}{{scheduler}}:leader"

    def schedule(self, name: str) -> str:
        """Hash of one schedule: ``next`` tick (ms), ``last`` tick fired (ms), ``last_task``,
        ``skipped`` ticks. No TTL. In the leader's slot: a tick moves only by the leader."""
        return f"{self.prefix}{{scheduler}}:schedule:{name}"

    def workflow(self, workflow_id: UUID | str) -> str:
        """Hash of one workflow, in its id's shard (its members' ids share their first two
        bytes with it, so they are in the same shard): ``kind``, ``total``, ``status``,
        ``done``, ``version``, ``wake``, ``spec``; per step ``m:<step>`` (its task id once
        submitted), ``f:<step>`` (its terminal state), ``r:<step>`` (its result); ``failed``,
        ``result``. No TTL while it runs; ``result_ttl_seconds`` once it ends."""
        return f"{self.shard(shard_of(workflow_id))}workflow:{workflow_id}"

    def workflow_events(self, workflow_id: UUID | str) -> str:
        """Stream: one entry per change of the workflow (a member submitted or finished, the
        workflow ended). Same TTL as the workflow."""
        return f"{self.shard(shard_of(workflow_id))}workflow-events:{workflow_id}"

    def workflows_due(self, shard: int) -> str:
        """Sorted set, one shard's outbox of workflows: ids of workflows with a step to
        submit, scored by when it became due (ms). Written in the same script as the
        member's terminal write that made it due; left once the step is submitted, so a
        worker dying in between leaves it for the reaper. No TTL."""
        return f"{self.shard(shard)}workflows-due"
