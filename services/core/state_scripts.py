"""The Redis Lua scripts that perform every task-state write, generated from ``states.py``.

Each script is one atomic step: check, fields, version, event, listing indexes, deadline and
expiry together. Every script that changes a record is safe to run twice: it stores the id of
the write it applied (``write``), and a second run with the same id answers as the first did
without applying anything (a client that lost the reply and tried again).

Common ARGV of the record-writing scripts (``COMMON_ARGS``): key prefix, now (µs), expiry
cutoff (µs), now (s), result TTL (s), event stream cap, write id. Script-specific arguments
follow, then field/value pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from services.core.states import TERMINAL_STATES, TRANSITIONS, TaskState
from services.core.workflow_scripts import MEMBER_DONE

COMMON_ARGS: Final = 7


def _lua_table(mapping: Mapping[TaskState, frozenset[TaskState]]) -> str:
    rows = []
    for source, targets in mapping.items():
        inner = ", ".join(f"{target.value} = true" for target in sorted(targets))
        rows.append(f"{source.value} = {{{inner}}}")
    return "{" + ", ".join(rows) + "}"


_TERMINAL_LUA = "{" + ", ".join(f"{s.value} = true" for s in sorted(TERMINAL_STATES)) + "}"

_COMMON = f"""
local allowed = {_lua_table(TRANSITIONS)}
local terminal = {_TERMINAL_LUA}
local prefix, now_us, cutoff_us = ARGV[1], ARGV[2], ARGV[3]
local now_s, ttl, maxlen, write_id = ARGV[4], ARGV[5], ARGV[6], ARGV[7]

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

-- The client lost the reply to this very write and sent it again: answer as the first time.
local function replayed(record)
  return write_id ~= '' and redis.call('HGET', record, 'write') == write_id
end

local function write(record, events, previous, status, fields_from)
  redis.call('HSET', record, 'status', status, 'write', write_id)
  for i = fields_from, #ARGV, 2 do
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

CREATE: Final = (
    _COMMON
    + """
-- KEYS: record, events, deadlines, idempotency ('' for none), withdrawn marker, timers (''
-- unless the task is held back until its raw field due_ms).
-- ARGV: common, publication deadline (ms; a held task's: due + grace), idempotency value,
-- valid until (µs), fields.
-- Returns {'ok', record} | {'exists', ''} | {'duplicate', idempotency value}
--       | {'expired', ''} | {'withdrawn', ''}.
if replayed(KEYS[1]) then return {'ok', redis.call('HGETALL', KEYS[1])} end
-- Run after the API stopped waiting for it (Redis was paused): the API answered 503, so
-- this create must not happen now.
local clock = redis.call('TIME')
if tonumber(clock[1]) * 1000000 + tonumber(clock[2]) > tonumber(ARGV[10]) then
  return {'expired', ''}
end
if redis.call('EXISTS', KEYS[5]) == 1 then return {'withdrawn', ''} end
if KEYS[4] ~= '' then
  local previous = redis.call('GET', KEYS[4])
  if previous then return {'duplicate', previous} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', ''} end
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[9], 'EX', ttl) end
redis.call('HSET', KEYS[1], 'created_us', now_us)
local flat = write(KEYS[1], KEYS[2], false, 'PENDING', 11)
redis.call('ZADD', KEYS[3], ARGV[8], cjson.decode(redis.call('HGET', KEYS[1], 'id')))
if KEYS[6] and KEYS[6] ~= '' then
  redis.call('ZADD', KEYS[6], redis.call('HGET', KEYS[1], 'due_ms'),
             cjson.decode(redis.call('HGET', KEYS[1], 'id')))
end
return {'ok', flat}
"""
)

UPDATE: Final = (
    _COMMON
    + MEMBER_DONE
    + """
-- KEYS: record, events, deadlines; then, for a terminal write of a workflow member, its
-- workflow, the workflow's events and the workflows' outbox ('' otherwise).
-- ARGV: common, new status, delivery starting an attempt ('' if none), the attempt this write
-- belongs to ('' for none: a client's cancel), new deadline (ms; '' to clear it), fields.
-- Returns {'ok', record} | {'missing', ''} | {'refused', current status}
--       | {'running', delivery that runs it} | {'stale', current status}.
if replayed(KEYS[1]) then return {'ok', redis.call('HGETALL', KEYS[1])} end
local status, delivery, attempt, deadline = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {'missing', ''} end
-- A write of an attempt that is over (it over-ran its time limit, or another took over).
if attempt ~= '' and redis.call('HGET', KEYS[1], 'attempts') ~= attempt then
  return {'stale', current}
end
if not allowed[current][status] then return {'refused', current} end
local id = cjson.decode(redis.call('HGET', KEYS[1], 'id'))
if delivery ~= '' then
  -- Starting an attempt. A task running from another delivery (a copy of its message) whose
  -- worker still holds the lease is left alone; the same delivery again (after a crash or a
  -- rebalance), or any delivery once the lease lapsed, starts a new attempt.
  local holder = redis.call('HGET', KEYS[1], 'delivery')
  if current == 'PROGRESS' and holder and holder ~= '' and holder ~= delivery then
    local lease = tonumber(redis.call('ZSCORE', KEYS[3], id) or '0')
    if lease * 1000 > tonumber(now_us) then return {'running', holder} end
  end
  redis.call('HSET', KEYS[1], 'delivery', delivery)
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
elseif status == 'PROGRESS' and current ~= 'PROGRESS' then
  -- A progress report for a task that is not running (its attempt is over).
  return {'refused', current}
end
if deadline == '' then
  redis.call('ZREM', KEYS[3], id)
else
  redis.call('ZADD', KEYS[3], deadline, id)
end
local flat = write(KEYS[1], KEYS[2], current, status, 12)
if terminal[status] and KEYS[4] and KEYS[4] ~= '' then
  workflow_member_done(KEYS[1], KEYS[4], KEYS[5], KEYS[6], status)
end
return {'ok', flat}
"""
)

RESTORE: Final = (
    _COMMON
    + """
-- KEYS: record, events, withdrawn marker. ARGV: common, fields (created_us among them).
-- A message whose record is gone (Redis lost it): the record is made again from the message.
-- Returns {'ok', record} | {'exists', ''} | {'withdrawn', ''}.
if replayed(KEYS[1]) then return {'ok', redis.call('HGETALL', KEYS[1])} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'withdrawn', ''} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', ''} end
return {'ok', write(KEYS[1], KEYS[2], false, 'PENDING', 8)}
"""
)

# KEYS: record, events, deadlines, idempotency ('' for none), withdrawn marker.
# ARGV: key prefix, task id, marker TTL (s).
# Returns {'withdrawn', ''} | {'started', current status}.
WITHDRAW: Final = """
local prefix, id = ARGV[1], ARGV[2]
local status = redis.call('HGET', KEYS[1], 'status')
if status and status ~= 'PENDING' then return {'started', status} end
if status then
  local task = cjson.decode(redis.call('HGET', KEYS[1], 'task'))
  for _, key in ipairs({prefix .. 'idx:all', prefix .. 'idx:task:' .. task,
                        prefix .. 'idx:state:PENDING',
                        prefix .. 'idx:task:' .. task .. ':state:PENDING'}) do
    redis.call('ZREM', key, id)
  end
  redis.call('DEL', KEYS[1], KEYS[2])
end
if KEYS[4] ~= '' then
  local value = redis.call('GET', KEYS[4])
  if value and string.sub(value, 1, #id) == id then redis.call('DEL', KEYS[4]) end
end
redis.call('ZREM', KEYS[3], id)
-- Any copy of its message that still reaches a worker (a publication that timed out but
-- landed) finds this and is skipped; a create that runs late is refused.
redis.call('SET', KEYS[5], '1', 'EX', ARGV[3])
return {'withdrawn', ''}
"""

# KEYS: record, deadlines. ARGV: task id, message position (topic/partition/offset).
# The broker has the task's message: remember where, and stop the publication deadline.
# Returns the current status ('' if the record is gone).
CONFIRM: Final = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'PENDING' then
  redis.call('HSET', KEYS[1], 'message', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return status or ''
"""

# KEYS: record, deadlines. ARGV: task id, now (ms), next deadline (ms), expected message
# position ('' to act on an overdue deadline instead).
# Claims an abandoned task for re-publication: one that is overdue (its lease lapsed, its
# retry was never sent, its publication never confirmed, its dead letter never written), or a
# PENDING one whose message (at the expected position) is gone. The deadline moves on, so a
# claim whose publication fails is claimed again later; a running task's delivery is
# cleared, so the copy can start.
# Returns {'due', status, task, payload, created_at, error, attempts, updated_at, priority,
#          expires_at, held_by} | {'gone' | 'not-due' | 'moved', status}.
RECLAIM: Final = """
local status = redis.call('HGET', KEYS[1], 'status')
local settled = status == 'COMPLETE' or status == 'CANCELLED'
if status == 'FAILURE' and redis.call('HEXISTS', KEYS[1], 'lettered') == 1 then settled = true end
if not status or settled then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'gone', status or ''}
end
if ARGV[4] ~= '' then
  if status ~= 'PENDING' or redis.call('HGET', KEYS[1], 'message') ~= ARGV[4] then
    return {'moved', status}
  end
else
  local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if not due or tonumber(due) > tonumber(ARGV[2]) then return {'not-due', status} end
  if status == 'PROGRESS' then redis.call('HSET', KEYS[1], 'delivery', '') end
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
local fields = redis.call(
  'HMGET', KEYS[1], 'task', 'payload', 'created_at', 'error', 'attempts', 'updated_at',
  'priority', 'expires_at', 'held_by')
return {'due', status, fields[1], fields[2], fields[3], fields[4], fields[5], fields[6],
        fields[7] or '', fields[8] or '', fields[9] or ''}
"""

# KEYS: record, deadlines. ARGV: task id.
# The dead letter of a FAILURE task is on its topic: the reaper need not write it.
LETTERED: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'lettered', '1') end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: deadlines, then one record per running attempt. ARGV: lease end (ms), then each
# record's attempt number. Renews the leases of attempts that are still their task's current,
# running one; returns the 1-based positions of those that are not (their attempt is over).
RENEW: Final = """
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

# --- Holding tasks back: delays, rate limits, concurrency limits -----------------------------
# A held task is PENDING (or RETRY) with ``due_at``/``held_by`` set, an entry in the timers
# sorted set (scored by its due time, ms) and a deadline one grace later (for the reaper,
# should no worker release it). The workers' timer loop releases due tasks onto their topics.

HOLD: Final = (
    _COMMON
    + """
-- KEYS: record, events, deadlines, timers.
-- ARGV: common, due (ms), deadline (ms), reserved rate slot ('' for none), fields.
-- Keeps the state (PENDING or RETRY) and moves its due time: the message that brought the
-- task is consumed, so its position is forgotten (the reaper must not think it lost).
-- Returns {'ok', record} | {'missing', ''} | {'refused', current status}.
if replayed(KEYS[1]) then return {'ok', redis.call('HGETALL', KEYS[1])} end
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {'missing', ''} end
if (current ~= 'PENDING' and current ~= 'RETRY') or not allowed[current][current] then
  return {'refused', current}
end
local id = cjson.decode(redis.call('HGET', KEYS[1], 'id'))
redis.call('HDEL', KEYS[1], 'message')
if ARGV[10] ~= '' then
  redis.call('HSET', KEYS[1], 'rate_slot', ARGV[10])
else
  redis.call('HDEL', KEYS[1], 'rate_slot')
end
redis.call('ZADD', KEYS[4], ARGV[8], id)
redis.call('ZADD', KEYS[3], ARGV[9], id)
return {'ok', write(KEYS[1], KEYS[2], current, current, 11)}
"""
)

# KEYS: record, timers, deadlines. ARGV: task id, now (ms), publication deadline (ms).
# Releases a held task whose due time came: its timer goes, its deadline becomes a
# publication deadline (the releasing worker confirms the publication, or the reaper
# publishes it). Returns {'due', status, task, payload, created_at, priority, expires_at,
# rate slot, due (ms)} | {'not-due', ''} | {'gone', status}.
RELEASE: Final = """
local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return {'not-due', ''} end
redis.call('ZREM', KEYS[2], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'PENDING' and status ~= 'RETRY' then return {'gone', status or ''} end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
local slot = redis.call('HGET', KEYS[1], 'rate_slot') or ''
redis.call('HDEL', KEYS[1], 'rate_slot')
local fields = redis.call(
  'HMGET', KEYS[1], 'task', 'payload', 'created_at', 'priority', 'expires_at')
return {'due', status, fields[1], fields[2], fields[3], fields[4] or '', fields[5] or '', slot,
        due}
"""

# KEYS: the task's rate bucket. ARGV: spacing of starts (µs).
# A token bucket of one token, in its GCRA form (the bucket is one timestamp: the theoretical
# arrival time of the next start). Each call reserves the next free slot, now or later, so
# tasks over the limit are given evenly spaced slots instead of retrying for one.
# Uses Redis's clock: every worker sees the same time. Returns {slot (µs), now (µs)}.
RATE_SLOT: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tat, now)
local following = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', following),
           'PX', math.floor((following - now) / 1000) + 1000)
return {string.format('%d', slot), string.format('%d', now)}
"""

# KEYS: the key's running slots (sorted set: task id -> lease end, ms), its waiters (list).
# ARGV: task id, limit, now (ms), lease end (ms).
# Takes one of ``limit`` slots for the task (again, if it holds one: renewed); lapsed leases
# (a worker that died) free theirs. When all are taken the task joins the waiters, woken by
# CONCURRENCY_RELEASE. Returns 'acquired' | 'held' | 'full'.
CONCURRENCY_ACQUIRE: Final = """
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

# KEYS: the key's running slots, its waiters, timers. ARGV: task id, now (ms), key prefix.
# Frees the task's slot and wakes the first waiter still held back by this limit (its timer
# is moved to now). Returns the woken task id, or ''.
CONCURRENCY_RELEASE: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
while true do
  local waiter = redis.call('LPOP', KEYS[2])
  if not waiter then return '' end
  local held = redis.call('HGET', ARGV[3] .. 'task:' .. waiter, 'held_by')
  if held == '"concurrency"' and redis.call('ZSCORE', KEYS[3], waiter) then
    redis.call('ZADD', KEYS[3], ARGV[2], waiter)
    return waiter
  end
end
"""

# --- The periodic scheduler's leader lease and tick bookkeeping ---------------------------

# KEYS: leader. ARGV: token, lease (ms). Takes the lease if free, renews it if ours.
# Returns 1 if this token leads now.
LEAD: Final = """
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

# KEYS: leader, schedule state (hash). ARGV: token, tick fired or skipped (ms), next tick
# (ms), task id ('' if skipped), skipped count.
# Moves a schedule past a tick, only for the leader and only from that tick (a leader that
# lost its lease, or a late repeat, changes nothing). Returns 'ok' | 'not-leader' | 'moved'.
ADVANCE: Final = """
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
