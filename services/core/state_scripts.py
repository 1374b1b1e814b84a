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
-- KEYS: record, events, deadlines, idempotency ('' for none), withdrawn marker.
-- ARGV: common, publication deadline (ms), idempotency value, valid until (µs), fields.
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
return {'ok', flat}
"""
)

UPDATE: Final = (
    _COMMON
    + """
-- KEYS: record, events, deadlines.
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
return {'ok', write(KEYS[1], KEYS[2], current, status, 12)}
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
# Returns {'due', status, task, payload, created_at, error, attempts, updated_at}
#       | {'gone' | 'not-due' | 'moved', status}.
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
  'HMGET', KEYS[1], 'task', 'payload', 'created_at', 'error', 'attempts', 'updated_at')
return {'due', status, fields[1], fields[2], fields[3], fields[4], fields[5], fields[6]}
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
