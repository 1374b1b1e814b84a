"""The Redis Lua scripts of workflows (see ``workflows.py`` for the semantics).

``MEMBER_DONE`` is not a script of its own: ``state_scripts.UPDATE`` runs it in the same
script as a member's terminal write, so the workflow's counter, results and next step are
updated atomically with it. A terminal state leads nowhere (``states.py``), and the step's
``f:`` field is set only if absent: a redelivered or duplicated member can never count twice.
"""

from __future__ import annotations

from typing import Final

EVENTS_MAX_LEN: Final = 1000

# Lua, run by UPDATE after a terminal write. Uses UPDATE's locals (record, now_us, ttl,
# maxlen); the workflow's keys are the last of UPDATE's layout (absent for a non-member).
MEMBER_DONE: Final = """
local function workflow_member_done(wf, wf_events, outbox, status)
  local link = cjson.decode(redis.call('HGET', record, 'workflow') or 'null')
  if link == cjson.null or redis.call('EXISTS', wf) == 0 then return end
  local step = tonumber(link['step'])
  if redis.call('HSETNX', wf, 'f:' .. step, status) == 0 then return end
  local task_id = cjson.decode(redis.call('HGET', record, 'id'))
  local result = redis.call('HGET', record, 'result') or 'null'
  if status == 'COMPLETE' then redis.call('HSET', wf, 'r:' .. step, result) end
  local kind = redis.call('HGET', wf, 'kind')
  local total = tonumber(redis.call('HGET', wf, 'total'))
  local current = redis.call('HGET', wf, 'status')
  local done = tonumber(redis.call('HGET', wf, 'done'))
  if step < total then done = redis.call('HINCRBY', wf, 'done', 1) end
  local function fail_here()
    if redis.call('HEXISTS', wf, 'failed') == 0 then
      redis.call('HSET', wf, 'failed',
                 cjson.encode({step = step, task_id = task_id, status = status}))
    end
  end
  local function finish(final)
    current = final
    redis.call('HSET', wf, 'status', final)
    redis.call('ZREM', outbox, link['id'])
    redis.call('EXPIRE', wf, ttl)
    redis.call('EXPIRE', wf_events, ttl)
  end
  local function wake()
    redis.call('HINCRBY', wf, 'wake', 1)
    redis.call('ZADD', outbox, math.floor(tonumber(now_us) / 1000), link['id'])
  end
  if current == 'RUNNING' then
    if kind == 'chain' then
      if status ~= 'COMPLETE' then
        fail_here()
        finish('FAILURE')
      elseif step == total - 1 then
        redis.call('HSET', wf, 'result', result)
        finish('COMPLETE')
      else
        wake()
      end
    elseif step < total then  -- a member of a group or chord
      if status ~= 'COMPLETE' then fail_here() end
      if done == total then
        local failed = redis.call('HEXISTS', wf, 'failed') == 1
        if kind == 'group' then
          if failed then finish('FAILURE') else finish('COMPLETE') end
        elseif failed and redis.call('HGET', wf, 'call_on_failure') ~= '1' then
          finish('FAILURE')  -- like Celery: no callback once a member failed
        else
          wake()  -- the chord's callback is due
        end
      end
    else  -- a chord's callback
      if status == 'COMPLETE' then
        redis.call('HSET', wf, 'result', result)
        finish('COMPLETE')
      else
        fail_here()
        finish('FAILURE')
      end
    end
  end
  local version = redis.call('HINCRBY', wf, 'version', 1)
  redis.call('HSET', wf, 'updated_us', now_us)
  redis.call('XADD', wf_events, 'MAXLEN', '~', maxlen, '*', 'step', step, 'task_id', task_id,
             'member_status', status, 'status', current, 'done', done, 'total', total,
             'version', version)
end
"""

# KEYS: workflow, its events, outbox[, Idempotency-Key]. ARGV: id, now (µs), kind, total,
# call on failure (1/0), spec (JSON)[, the key's value "<id> <request hash>", its TTL (s)].
# Creates a RUNNING workflow, due in the outbox (its first steps to submit), and claims the
# key. Returns {'ok', ''} | {'exists', ''} | {'duplicate', the key's value}.
CREATE: Final = f"""#!lua
if KEYS[4] then
  local previous = redis.call('GET', KEYS[4])
  if previous then return {{'duplicate', previous}} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {{'exists', ''}} end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'kind', ARGV[3], 'total', ARGV[4],
           'call_on_failure', ARGV[5], 'spec', ARGV[6], 'status', 'RUNNING', 'done', 0,
           'version', 1, 'wake', 1, 'created_us', ARGV[2], 'updated_us', ARGV[2])
redis.call('ZADD', KEYS[3], math.floor(tonumber(ARGV[2]) / 1000), ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', {EVENTS_MAX_LEN}, '*', 'status', 'RUNNING',
           'done', 0, 'total', ARGV[4], 'version', 1)
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[7], 'EX', ARGV[8]) end
return {{'ok', ''}}
"""

# KEYS: Idempotency-Key. ARGV: the value it must hold ("<workflow id> <request hash>").
# Frees the key of a workflow whose start failed (cancelled): the client's retry with the
# same key starts it afresh. Returns 1 if it was freed.
RELEASE: Final = """#!lua
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

# KEYS: workflow, its events. ARGV: step, task id, now (µs).
# Records that a step's task was submitted. Returns the workflow's status ('' if it is gone):
# not RUNNING means it ended meanwhile (cancelled), and the caller cancels that task.
ATTACH: Final = f"""#!lua
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
if redis.call('HSETNX', KEYS[1], 'm:' .. ARGV[1], ARGV[2]) == 1 then
  local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('HSET', KEYS[1], 'updated_us', ARGV[3])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', {EVENTS_MAX_LEN}, '*', 'step', ARGV[1],
             'task_id', ARGV[2], 'member_status', 'PENDING', 'status', status,
             'done', redis.call('HGET', KEYS[1], 'done'),
             'total', redis.call('HGET', KEYS[1], 'total'), 'version', version)
end
return status
"""

# KEYS: workflow, outbox. ARGV: id, the ``wake`` value read before submitting.
# Leaves the outbox once what was due is submitted, unless a member woke the workflow again
# meanwhile (its next step is due too). Returns 1 if it left.
SETTLE: Final = """#!lua
local wake = redis.call('HGET', KEYS[1], 'wake')
if wake and wake ~= ARGV[2] and redis.call('HGET', KEYS[1], 'status') == 'RUNNING' then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: workflow, its events, outbox. ARGV: id, now (µs), TTL (s), final status (CANCELLED,
# or FAILURE when a step cannot be submitted), failed member (JSON, '' for none).
# Ends a RUNNING workflow: nothing more is submitted. Returns {'ok', member task ids...}
# | {'missing'} | {'refused', status}.
END: Final = f"""#!lua
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {{'missing'}} end
if status ~= 'RUNNING' then return {{'refused', status}} end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'updated_us', ARGV[2])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'failed', ARGV[5]) end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', {EVENTS_MAX_LEN}, '*', 'status', ARGV[4],
           'done', redis.call('HGET', KEYS[1], 'done'),
           'total', redis.call('HGET', KEYS[1], 'total'), 'version', version)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local members = {{'ok'}}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'm:' then table.insert(members, fields[i + 1]) end
end
return members
"""
