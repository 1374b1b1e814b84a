"""The Redis Lua scripts that perform every task-state write, generated from ``states.py``.

Each script is one atomic step: check, fields, version, event, listing indexes, deadline and
expiry together. Every key a script touches is passed in KEYS, and all of them are in the
task's shard (``keys.py``), so each call is single-slot: Redis Cluster runs it on the node
that owns the slot, and during a resharding refuses it whole (TRYAGAIN) rather than split
it. Scripts start with ``#!lua``, which makes a cluster node refuse any access outside the
declared slot instead of tolerating it while the keys happen to share a node.

The key layouts are declared below (``Layout``): the store builds KEYS from the same names,
and each script's Lua locals are generated from them, so no key name is spelled in Lua.

Every script that changes a record is safe to run twice: it stores the id of the write it
applied (``write``), and a second run with the same id answers as the first did without
applying anything (a client that lost the reply and tried again).

Events are lean: a stream entry holds what the write changed (status, version, attempts and
the fields the write set), never the payload or the result, which stay in the record only
(``RECORD_ONLY``): whoever replays events reads those from the record
(``state_codec.py``). A create appends no event (the record is its version 1), so a queued
task has no stream yet; a terminal write rewrites the stream at the size it holds. Common
ARGV of the record-writing scripts (``COMMON_ARGS``): now (µs), expiry cutoff (µs), now (s),
result TTL (s), event stream cap, write id. Script-specific arguments follow, then
field/value pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar
from uuid import UUID

from services.core.keys import FINISHED_TTL_SECONDS, RedisKeys, shard_of
from services.core.states import TERMINAL_STATES, TRANSITIONS, TaskState
from services.core.workflow_scripts import MEMBER_DONE

COMMON_ARGS: Final = 6

_T = TypeVar("_T")

RECORD_ONLY: Final = frozenset(
    {"id", "task", "payload", "created_at", "created_us", "result", "attempts"}
)
"""Fields a write stores in the record but leaves out of its event: the immutable ones, and
the result (a COMPLETE event refers to the record's, which is final). ``attempts`` is added
to every event from the record, once."""

LIVE_STATES: Final = tuple(state for state in TaskState if TRANSITIONS[state])
"""States a task can leave: any write moves a task from one of these."""

STATE_ROLE: Final = "state:"
TASK_STATE_ROLE: Final = "task-state:"
TARGET_STATE: Final = "target"
"""In a layout, the index pair of the state the write moves to (known only at call time)."""


WORKFLOW_ROLES: Final = ("workflow", "workflow_events", "workflows_due")
"""Keys a workflow member's terminal write updates with it (``workflow_scripts.py``): passed
only for a member, last in the layout."""


@dataclass(frozen=True)
class Layout:
    """The KEYS of a script, by role and in order. Roles: ``record``, ``events``,
    ``withdrawn`` (one task's keys), ``deadlines``, ``finished``, ``all``, ``by_task``,
    ``state:<S>`` / ``task-state:<S>`` (the shard's indexes of state S, overall and for the
    task's name; ``<S>`` may be ``target``), and ``idempotency`` (optional, last)."""

    roles: tuple[str, ...]

    def lua(self) -> str:
        """Lua locals for every role; roles this layout lacks are nil."""
        singles = (
            "record",
            "events",
            "withdrawn",
            "deadlines",
            "finished",
            "all",
            "by_task",
            "timers",
            *WORKFLOW_ROLES,
        )
        lines = [f"local {role} = {self._key(role)}" for role in (*singles, "idempotency")]
        lines.append("local by_state, by_task_state = {}, {}")
        for position, role in enumerate(self.roles, start=1):
            for prefix, table in ((STATE_ROLE, "by_state"), (TASK_STATE_ROLE, "by_task_state")):
                state = role.removeprefix(prefix)
                if role.startswith(prefix) and state != TARGET_STATE:
                    lines.append(f"{table}['{state}'] = KEYS[{position}]")
        return "\n".join(lines) + "\n"

    def _key(self, role: str) -> str:
        # A role the layout lacks is nil; so is ``idempotency`` when the caller passed none
        # (it is the last key, and KEYS[n + 1] is nil in Lua).
        return f"KEYS[{self.roles.index(role) + 1}]" if role in self.roles else "nil"

    def resolve(
        self,
        keys: RedisKeys,
        task_id: UUID,
        *,
        task: str | None = None,
        target: TaskState | None = None,
        minute: int | None = None,
        idempotency_key: str | None = None,
        workflow_id: UUID | None = None,
    ) -> list[str]:
        """The KEYS for one call: the names (``keys.py``) of this task's keys and of its
        shard's, in this layout's order; ``idempotency`` only when there is a key."""
        shard = shard_of(task_id)
        singles = {
            "record": lambda: keys.record(task_id),
            "events": lambda: keys.events(task_id),
            "withdrawn": lambda: keys.withdrawn(task_id),
            "deadlines": lambda: keys.deadlines(shard),
            "finished": lambda: keys.finished(shard, _given(minute, "minute")),
            "all": lambda: keys.index(shard),
            "by_task": lambda: keys.index(shard, task=_given(task, "task")),
            "timers": lambda: keys.timers(shard),
        }
        if workflow_id is not None:  # a workflow member's terminal write: its workflow's
            singles |= {
                "workflow": lambda: keys.workflow(workflow_id),
                "workflow_events": lambda: keys.workflow_events(workflow_id),
                "workflows_due": lambda: keys.workflows_due(shard),
            }
        names = []
        for role in self.roles:
            if role in WORKFLOW_ROLES and workflow_id is None:
                continue  # last in their layout, so nil in Lua
            if role == "idempotency":
                if idempotency_key is not None:
                    names.append(keys.idempotency(idempotency_key))
            elif role in singles:
                names.append(singles[role]())
            else:
                by_task = role.startswith(TASK_STATE_ROLE)
                state = role.removeprefix(TASK_STATE_ROLE if by_task else STATE_ROLE)
                if state == TARGET_STATE:
                    state = _given(target, "target").value
                name = _given(task, "task") if by_task else None
                names.append(keys.index(shard, task=name, state=state))
        return names

    def target_position(self) -> tuple[int, int]:
        """1-based KEYS positions of the target state's two indexes."""
        return (
            self.roles.index(STATE_ROLE + TARGET_STATE) + 1,
            self.roles.index(TASK_STATE_ROLE + TARGET_STATE) + 1,
        )


def _given(value: _T | None, what: str) -> _T:
    if value is None:
        raise ValueError(f"this script's keys need the {what}")
    return value


def _pair(state: str) -> tuple[str, str]:
    return STATE_ROLE + state, TASK_STATE_ROLE + state


_PENDING = _pair(TaskState.PENDING.value)

CREATE_KEYS: Final = Layout(
    (
        "record",
        "events",
        "withdrawn",
        "deadlines",
        "timers",
        "all",
        "by_task",
        *_PENDING,
        "idempotency",
    )
)
RESTORE_KEYS: Final = Layout(("record", "events", "withdrawn", "all", "by_task", *_PENDING))
UPDATE_KEYS: Final = Layout(
    (
        "record",
        "events",
        "deadlines",
        "finished",
        *(role for state in LIVE_STATES for role in _pair(state.value)),
        *_pair(TARGET_STATE),
        *WORKFLOW_ROLES,
    )
)
WITHDRAW_KEYS: Final = CREATE_KEYS
SETTLE_KEYS: Final = Layout(("record", "deadlines"))
"""CONFIRM, RECLAIM and LETTERED: one record and its shard's deadlines."""
READ_KEYS: Final = Layout(("record", "events"))


def _lua_table(mapping: Mapping[TaskState, frozenset[TaskState]]) -> str:
    rows = []
    for source, targets in mapping.items():
        inner = ", ".join(f"{target.value} = true" for target in sorted(targets))
        rows.append(f"{source.value} = {{{inner}}}")
    return "{" + ", ".join(rows) + "}"


def _lua_set(names: frozenset[str] | frozenset[TaskState]) -> str:
    return "{" + ", ".join(f"{name} = true" for name in sorted(names)) + "}"


def _script(layout: Layout, body: str) -> str:
    return "#!lua\n" + layout.lua() + body


_COMMON = f"""
local allowed = {_lua_table(TRANSITIONS)}
local terminal = {_lua_set(TERMINAL_STATES)}
local record_only = {_lua_set(RECORD_ONLY)}
local now_us, cutoff_us, now_s = ARGV[1], ARGV[2], ARGV[3]
local ttl, maxlen, write_id = ARGV[4], ARGV[5], ARGV[6]

-- Listing indexes, kept in the same atomic write: every task by creation time, by task name,
-- by state and by both. Live states are ordered by creation; terminal ones by the time they
-- finished, so they are trimmed exactly when their records expire. A terminal write also
-- counts the finish in the shard's counter of this minute (the dashboard's rates).
local function reindex(id, created, previous, status)
  if not previous then
    redis.call('ZADD', all, created, id)
    redis.call('ZADD', by_task, created, id)
  end
  if previous == status then return end
  if previous then
    redis.call('ZREM', by_state[previous], id)
    redis.call('ZREM', by_task_state[previous], id)
  end
  local score = created
  if terminal[status] then score = now_us end
  for _, key in ipairs({{by_state[status], by_task_state[status]}}) do
    redis.call('ZADD', key, score, id)
    if terminal[status] then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff_us) end
  end
  if terminal[status] then
    redis.call('HINCRBY', finished, status .. ':' .. now_s, 1)
    redis.call('EXPIRE', finished, {FINISHED_TTL_SECONDS})
  end
end

-- The client lost the reply to this very write and sent it again: answer as the first time.
local function replayed()
  return write_id ~= '' and redis.call('HGET', record, 'write') == write_id
end

-- Store the fields, raise the version, keep the indexes, append what changed to the events.
-- A create (no previous state) appends nothing: version 1, PENDING, is the record itself, and
-- a queued task has no stream at all (a stream's first node costs 4 KB, see below).
local function write(previous, status, fields_from)
  redis.call('HSET', record, 'status', status, 'write', write_id, unpack(ARGV, fields_from))
  local change = {{'status', status}}
  for i = fields_from, #ARGV, 2 do
    if not record_only[ARGV[i]] then
      change[#change + 1] = ARGV[i]
      change[#change + 1] = ARGV[i + 1]
    end
  end
  local version = redis.call('HINCRBY', record, 'version', 1)
  local kept = redis.call('HMGET', record, 'id', 'created_us', 'attempts')
  reindex(cjson.decode(kept[1]), kept[2], previous, status)
  change[#change + 1] = 'version'
  change[#change + 1] = version
  change[#change + 1] = 'attempts'
  change[#change + 1] = kept[3]
  if previous then redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(change)) end
  if terminal[status] then
    redis.call('EXPIRE', record, ttl)
    -- A stream's first node is allocated at stream-node-max-bytes (4 KB by default, Redis
    -- 6.2+) however little it holds, and kept so until it fills up: a finished task's few
    -- events would cost 4 KB for as long as its record lives. Written again from its own
    -- dump, the stream takes what it holds. Its expiry comes with it.
    redis.call('RESTORE', events, ttl * 1000, redis.call('DUMP', events), 'REPLACE')
  else
    redis.call('PERSIST', record)
    redis.call('PERSIST', events)
  end
  return redis.call('HGETALL', record)
end
"""

CREATE: Final = _script(
    CREATE_KEYS,
    _COMMON
    + """
-- ARGV: common, publication deadline (ms), idempotency value, valid until (µs), fields.
-- Returns {'ok', record} | {'exists', ''} | {'duplicate', idempotency value}
--       | {'expired', ''} | {'withdrawn', ''}.
if replayed() then return {'ok', redis.call('HGETALL', record)} end
-- Run after the API stopped waiting for it (Redis was paused): the API answered 503, so
-- this create must not happen now.
local clock = redis.call('TIME')
if tonumber(clock[1]) * 1000000 + tonumber(clock[2]) > tonumber(ARGV[9]) then
  return {'expired', ''}
end
if redis.call('EXISTS', withdrawn) == 1 then return {'withdrawn', ''} end
if idempotency then
  local previous = redis.call('GET', idempotency)
  if previous then return {'duplicate', previous} end
end
if redis.call('EXISTS', record) == 1 then return {'exists', ''} end
if idempotency then redis.call('SET', idempotency, ARGV[8], 'EX', ttl) end
redis.call('HSET', record, 'created_us', now_us)
local flat = write(false, 'PENDING', 10)
local id = cjson.decode(redis.call('HGET', record, 'id'))
redis.call('ZADD', deadlines, ARGV[7], id)
-- Held back until its raw field due_ms (a countdown or an eta): the timer loop queues it.
local due_ms = redis.call('HGET', record, 'due_ms')
if due_ms then redis.call('ZADD', timers, due_ms, id) end
return {'ok', flat}
""",
)

UPDATE: Final = _script(
    UPDATE_KEYS,
    _COMMON
    + MEMBER_DONE
    + f"""
-- ARGV: common, new status, task name (as stored), delivery starting an attempt ('' if none),
-- the attempt this write belongs to ('' for none: a client's cancel), new deadline (ms; ''
-- to clear it), fields.
-- Returns {{'ok', record}} | {{'missing', ''}} | {{'refused', current status}}
--       | {{'running', delivery that runs it}} | {{'stale', current status}}
--       | {{'task', the record's task name}} (the caller built its keys for another task)
--       | {{'workflow', ''}} (a terminal write whose caller's word on the task's workflow
--         membership, given by the keys it passed, is not the record's).
if replayed() then return {{'ok', redis.call('HGETALL', record)}} end
local status, task, delivery, attempt, deadline = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
by_state[status] = KEYS[{UPDATE_KEYS.target_position()[0]}]
by_task_state[status] = KEYS[{UPDATE_KEYS.target_position()[1]}]
local current = redis.call('HGET', record, 'status')
if not current then return {{'missing', ''}} end
local stored_task = redis.call('HGET', record, 'task')
if stored_task ~= task then return {{'task', stored_task}} end
if terminal[status] then
  local link = redis.call('HGET', record, 'workflow')
  local member = (link and link ~= 'null') and true or false
  if member ~= (workflow ~= nil) then return {{'workflow', ''}} end
end
-- A write of an attempt that is over (it over-ran its time limit, or another took over).
if attempt ~= '' and redis.call('HGET', record, 'attempts') ~= attempt then
  return {{'stale', current}}
end
if not allowed[current][status] then return {{'refused', current}} end
local id = cjson.decode(redis.call('HGET', record, 'id'))
if delivery ~= '' then
  -- Starting an attempt. A task running from another delivery (a copy of its message) whose
  -- worker still holds the lease is left alone; the same delivery again (after a crash or a
  -- rebalance), or any delivery once the lease lapsed, starts a new attempt.
  local holder = redis.call('HGET', record, 'delivery')
  if current == 'PROGRESS' and holder and holder ~= '' and holder ~= delivery then
    local lease = tonumber(redis.call('ZSCORE', deadlines, id) or '0')
    if lease * 1000 > tonumber(now_us) then return {{'running', holder}} end
  end
  redis.call('HSET', record, 'delivery', delivery)
  redis.call('HINCRBY', record, 'attempts', 1)
elseif status == 'PROGRESS' and current ~= 'PROGRESS' then
  -- A progress report for a task that is not running (its attempt is over).
  return {{'refused', current}}
end
if deadline == '' then
  redis.call('ZREM', deadlines, id)
else
  redis.call('ZADD', deadlines, deadline, id)
end
local flat = write(current, status, 12)
-- A workflow member's terminal write updates its workflow in the same script.
if terminal[status] and workflow then
  workflow_member_done(workflow, workflow_events, workflows_due, status)
end
return {{'ok', flat}}
""",
)

RESTORE: Final = _script(
    RESTORE_KEYS,
    _COMMON
    + """
-- ARGV: common, fields (created_us among them).
-- A message whose record is gone (Redis lost it): the record is made again from the message.
-- Returns {'ok', record} | {'exists', ''} | {'withdrawn', ''}.
if replayed() then return {'ok', redis.call('HGETALL', record)} end
if redis.call('EXISTS', withdrawn) == 1 then return {'withdrawn', ''} end
if redis.call('EXISTS', record) == 1 then return {'exists', ''} end
return {'ok', write(false, 'PENDING', 7)}
""",
)

WITHDRAW: Final = _script(
    WITHDRAW_KEYS,
    """
-- ARGV: task id, marker TTL (s). Returns {'withdrawn', ''} | {'started', current status}.
local id = ARGV[1]
local status = redis.call('HGET', record, 'status')
if status and status ~= 'PENDING' then return {'started', status} end
if status then
  for _, key in ipairs({all, by_task, by_state['PENDING'], by_task_state['PENDING']}) do
    redis.call('ZREM', key, id)
  end
  redis.call('DEL', record, events)
end
if idempotency then
  local value = redis.call('GET', idempotency)
  if value and string.sub(value, 1, #id) == id then redis.call('DEL', idempotency) end
end
redis.call('ZREM', deadlines, id)
-- Any copy of its message that still reaches a worker (a publication that timed out but
-- landed) finds this and is skipped; a create that runs late is refused.
redis.call('SET', withdrawn, '1', 'EX', ARGV[2])
return {'withdrawn', ''}
""",
)

CONFIRM: Final = _script(
    SETTLE_KEYS,
    """
-- ARGV: task id, message position (topic/partition/offset).
-- The broker has the task's message: remember where, and stop the publication deadline.
-- Returns the current status ('' if the record is gone).
local status = redis.call('HGET', record, 'status')
if status == 'PENDING' then
  redis.call('HSET', record, 'message', ARGV[2])
  redis.call('ZREM', deadlines, ARGV[1])
end
return status or ''
""",
)

RECLAIM: Final = _script(
    SETTLE_KEYS,
    """
-- ARGV: task id, now (ms), next deadline (ms), expected message position ('' to act on an
-- overdue deadline instead).
-- Claims an abandoned task for re-publication: one that is overdue (its lease lapsed, its
-- retry was never sent, its publication never confirmed, its dead letter never written), or a
-- PENDING one whose message (at the expected position) is gone. The deadline moves on, so a
-- claim whose publication fails is claimed again later; a running task's delivery is
-- cleared, so the copy can start.
-- Returns {'due', status, task, payload, created_at, error, attempts, updated_at, priority,
--          expires_at, held_by, workflow} | {'gone' | 'not-due' | 'moved', status}.
local status = redis.call('HGET', record, 'status')
local settled = status == 'COMPLETE' or status == 'CANCELLED'
if status == 'FAILURE' and redis.call('HEXISTS', record, 'lettered') == 1 then settled = true end
if not status or settled then
  redis.call('ZREM', deadlines, ARGV[1])
  return {'gone', status or ''}
end
if ARGV[4] ~= '' then
  if status ~= 'PENDING' or redis.call('HGET', record, 'message') ~= ARGV[4] then
    return {'moved', status}
  end
else
  local due = redis.call('ZSCORE', deadlines, ARGV[1])
  if not due or tonumber(due) > tonumber(ARGV[2]) then return {'not-due', status} end
  if status == 'PROGRESS' then redis.call('HSET', record, 'delivery', '') end
  redis.call('ZADD', deadlines, ARGV[3], ARGV[1])
end
local fields = redis.call(
  'HMGET', record, 'task', 'payload', 'created_at', 'error', 'attempts', 'updated_at',
  'priority', 'expires_at', 'held_by', 'workflow')
return {'due', status, fields[1], fields[2], fields[3], fields[4], fields[5], fields[6],
        fields[7] or '', fields[8] or '', fields[9] or '', fields[10] or ''}
""",
)

LETTERED: Final = _script(
    SETTLE_KEYS,
    """
-- ARGV: task id.
-- The dead letter of a FAILURE task is on its topic: the reaper need not write it.
if redis.call('EXISTS', record) == 1 then redis.call('HSET', record, 'lettered', '1') end
redis.call('ZREM', deadlines, ARGV[1])
return 1
""",
)

# KEYS: one shard's deadlines, then one record (of that shard) per running attempt.
# ARGV: lease end (ms), then each record's attempt number. Renews the leases of attempts that
# are still their task's current, running one; returns the 1-based positions of those that
# are not (their attempt is over).
RENEW: Final = """#!lua
local lost = {}
for i = 2, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'status', 'attempts', 'delivery', 'id')
  if fields[1] == 'PROGRESS' and fields[2] == ARGV[i] and fields[3] and fields[3] ~= '' then
    redis.call('ZADD', KEYS[1], ARGV[1], cjson.decode(fields[4]))
  else
    table.insert(lost, i - 1)
  end
end
return lost
"""

SNAPSHOT: Final = (
    "#!lua flags=no-writes\n"
    + READ_KEYS.lua()
    + """
-- The record and the id of its latest event, read together: following the events from
-- there misses no write and repeats none.
local latest = redis.call('XREVRANGE', events, '+', '-', 'COUNT', 1)
local last = ''
if #latest > 0 then last = latest[1][1] end
return {redis.call('HGETALL', record), last}
"""
)

HISTORY: Final = (
    "#!lua flags=no-writes\n"
    + READ_KEYS.lua()
    + """
-- The record and every event it kept (up to the stream's cap), read together.
return {redis.call('HGETALL', record), redis.call('XRANGE', events, '-', '+')}
"""
)


# --- Holding tasks back: delays, rate limits, concurrency limits -----------------------------
# A held task is PENDING (or RETRY) with ``due_at``/``held_by`` set, an entry in its shard's
# timers (scored by its due time, ms) and a deadline one grace later (for the reaper, should
# no worker release it). The workers' timer loop releases due tasks onto their topics.

HOLD_KEYS: Final = Layout(("record", "events", "deadlines", "timers"))
RELEASE_KEYS: Final = Layout(("record", "timers", "deadlines"))
WAKE_KEYS: Final = Layout(("record", "timers"))

HOLD: Final = _script(
    HOLD_KEYS,
    _COMMON
    + """
-- ARGV: common, due (ms), deadline (ms), reserved rate slot ('' for none), fields.
-- Keeps the state (PENDING or RETRY) and moves its due time: the message that brought the
-- task is consumed, so its position is forgotten (the reaper must not think it lost).
-- Returns {'ok', record} | {'missing', ''} | {'refused', current status}.
if replayed() then return {'ok', redis.call('HGETALL', record)} end
local current = redis.call('HGET', record, 'status')
if not current then return {'missing', ''} end
if (current ~= 'PENDING' and current ~= 'RETRY') or not allowed[current][current] then
  return {'refused', current}
end
local id = cjson.decode(redis.call('HGET', record, 'id'))
redis.call('HDEL', record, 'message')
if ARGV[9] ~= '' then
  redis.call('HSET', record, 'rate_slot', ARGV[9])
else
  redis.call('HDEL', record, 'rate_slot')
end
redis.call('ZADD', timers, ARGV[7], id)
redis.call('ZADD', deadlines, ARGV[8], id)
return {'ok', write(current, current, 10)}
""",
)

RELEASE: Final = _script(
    RELEASE_KEYS,
    """
-- ARGV: task id, now (ms), publication deadline (ms).
-- Releases a held task whose due time came: its timer goes, its deadline becomes a
-- publication deadline (the releasing worker confirms the publication, or the reaper
-- publishes it). Returns {'due', status, task, payload, created_at, priority, expires_at,
-- rate slot, due (ms), workflow} | {'not-due', ''} | {'gone', status}.
local due = redis.call('ZSCORE', timers, ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return {'not-due', ''} end
redis.call('ZREM', timers, ARGV[1])
local status = redis.call('HGET', record, 'status')
if status ~= 'PENDING' and status ~= 'RETRY' then return {'gone', status or ''} end
redis.call('ZADD', deadlines, ARGV[3], ARGV[1])
local slot = redis.call('HGET', record, 'rate_slot') or ''
redis.call('HDEL', record, 'rate_slot')
local fields = redis.call(
  'HMGET', record, 'task', 'payload', 'created_at', 'priority', 'expires_at', 'workflow')
return {'due', status, fields[1], fields[2], fields[3], fields[4] or '', fields[5] or '', slot,
        due, fields[6] or ''}
""",
)

# KEYS: the task's rate bucket. ARGV: spacing of starts (µs).
# A token bucket of one token, in its GCRA form (the bucket is one timestamp: the theoretical
# arrival time of the next start). Each call reserves the next free slot, now or later, so
# tasks over the limit are given evenly spaced slots instead of retrying for one.
# Uses Redis's clock: every worker sees the same time. Returns {slot (µs), now (µs)}.
RATE_SLOT: Final = """#!lua
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tat, now)
local following = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', following),
           'PX', math.floor((following - now) / 1000) + 1000)
return {string.format('%d', slot), string.format('%d', now)}
"""

# KEYS: the key's running slots (sorted set: task id -> lease end, ms), its waiters (list),
# both under one hash tag. ARGV: task id, limit, now (ms), lease end (ms).
# Takes one of ``limit`` slots for the task (again, if it holds one: renewed); lapsed leases
# (a worker that died) free theirs. When all are taken the task joins the waiters, woken
# when a slot frees. Returns 'acquired' | 'held' | 'full'.
CONCURRENCY_ACQUIRE: Final = """#!lua
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  return 'held'
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  return 'acquired'
end
redis.call('LREM', KEYS[2], 0, ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
return 'full'
"""

# KEYS: the key's running slots, its waiters. ARGV: task id ('' to free nothing).
# Frees the task's slot and takes the first waiter off the list; the caller wakes it (WAKE,
# in the waiter's shard) or, if it waits no more, takes the next. Returns the waiter, or ''.
CONCURRENCY_RELEASE: Final = """#!lua
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
return redis.call('LPOP', KEYS[2]) or ''
"""

WAKE: Final = _script(
    WAKE_KEYS,
    """
-- ARGV: task id, now (ms). Moves the timer of a task held back by its concurrency limit to
-- now. Returns 1 if it was waiting (woken), 0 otherwise.
if redis.call('HGET', record, 'held_by') == '"concurrency"'
   and redis.call('ZSCORE', timers, ARGV[1]) then
  redis.call('ZADD', timers, ARGV[2], ARGV[1])
  return 1
end
return 0
""",
)

# --- The periodic scheduler's leader lease and tick bookkeeping ---------------------------

# KEYS: leader. ARGV: token, lease (ms). Takes the lease if free, renews it if ours.
# Returns 1 if this token leads now.
LEAD: Final = """#!lua
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS: leader, schedule state (hash), under one hash tag. ARGV: token, tick fired or skipped
# (ms), next tick (ms), task id ('' if skipped), skipped count.
# Moves a schedule past a tick, only for the leader and only from that tick (a leader that
# lost its lease, or a late repeat, changes nothing). Returns 'ok' | 'not-leader' | 'moved'.
ADVANCE: Final = """#!lua
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'not-leader' end
local next = redis.call('HGET', KEYS[2], 'next')
if next and next ~= ARGV[2] then return 'moved' end
redis.call('HSET', KEYS[2], 'next', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], 'last', ARGV[2], 'last_task', ARGV[4])
end
if ARGV[5] ~= '0' then redis.call('HINCRBY', KEYS[2], 'skipped', ARGV[5]) end
return 'ok'
"""
