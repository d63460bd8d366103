-- State-machine steps shared by the scripts that move invocations (needs lib_core.lua).

-- Filled in by lib_budgets.lua in the scripts that claim or release (budget_steps: see
-- lib_core.lua); the others never reach it.
local move_due

-- Change the status of <id> (its fields <f>) to <new> and add the transition to its history
-- (field h<n>, see lib_core.lua); any further arguments are field/value pairs written by the
-- same HSET. A run's end names its runner by reference: the entry before is that run's start.
local function transition(id, f, new, now, runner, ...)
  local n = f.hn + 1
  local entry = history_entry(new, now, runner, f.status == 'running' and runner == f.runner)
  local text = string.format('%d', n)
  redis.call('HSET', P .. 'inv:' .. id, 's', new, 'hn', text, 'h' .. text, entry, ...)
  count(f.task, f.status, -1)
  count(f.task, new, 1)
  f.status, f.hn = new, n
end

local function take_regkey(id, regkey)
  if regkey ~= '' then redis.call('HSETNX', k('regkeys'), regkey, id) end
end

local function release_regkey(id, regkey)
  if regkey ~= '' and redis.call('HGET', k('regkeys'), regkey) == id then
    redis.call('HDEL', k('regkeys'), regkey)
  end
end

-- Make <id> final: store result or error, schedule deletion, wake result waiters.
local function finalize(id, f, new, now, runner, result, err, ttl)
  redis.call('ZREM', k('leases'), id)
  -- Dated for deletion in the bucket of the second its TTL ends in (see 'expb' in lib_core.lua).
  local expires = time_text(now + ttl)
  local dot = string.find(expires, '.', 1, true)
  local bucket = string.sub(expires, 1, dot - 1)
  if redis.call('RPUSH', k('exp:' .. bucket), id .. '\31' .. string.sub(expires, dot + 1)) == 1 then
    redis.call('ZADD', k('expb'), bucket, bucket)
  end
  -- Fields that no longer apply are deleted, not emptied, and the expiry time is not stored
  -- (nothing read it from the record): a finished no-op's record then fits a smaller
  -- allocation (MEMORY USAGE 424 -> 328 B on Redis 7.0). An absent field reads as empty.
  local key = P .. 'inv:' .. id
  if result then
    transition(id, f, new, now, runner, 'result', result)
    redis.call('HDEL', key, 'runner_id', 'lease_expires_at', 'error')
  elseif err then
    transition(id, f, new, now, runner, 'error', err)
    redis.call('HDEL', key, 'runner_id', 'lease_expires_at', 'result')
  else
    transition(id, f, new, now, runner)
    redis.call('HDEL', key, 'runner_id', 'lease_expires_at', 'result', 'error')
  end
  if f.waited then
    redis.call('RPUSH', k('done:' .. id), '1')
    redis.call('EXPIRE', k('done:' .. id), string.format('%d', math.ceil(ttl)))
  end
  if f.cancel_requested and f.runner ~= '' then
    -- Ended: a request its runner has not read yet is dropped (it would name a finished run).
    redis.call('LREM', k('cancels:' .. f.runner), '0', id)
  end
end

-- Free <id>'s slot of <key> and hand freed slots to the first parked waiters, in order.
local function release_slot(id, key, limit)
  if key == '' then return end
  local skey, pkey, pz = k('slots:' .. key), k('parked:' .. key), k('pz:' .. key)
  redis.call('SREM', skey, id)
  -- Nobody parked (the usual case): one look. 'parked_keys' names <key> only while someone is.
  local held  -- the slot set's size, counted here once known (a waiter's SADD always adds)
  if redis.call('EXISTS', pkey, pz) > 0 then
    local promoted = {}
    held = redis.call('SCARD', skey)
    while held < limit do
      -- The next waiter: the head of pz:<key> when its priority is above 0 (a score below 0),
      -- else the head of parked:<key>, else the head of pz:<key> (priorities below 0).
      local head = redis.call('ZRANGE', pz, '0', '0', 'WITHSCORES')
      local waiter
      if not head[1] or head[2] + 0 >= 0 then waiter = redis.call('LPOP', pkey) end
      if not waiter and head[1] then
        waiter = head[1]
        redis.call('ZREM', pz, waiter)
      end
      if not waiter then break end
      redis.call('SADD', skey, waiter)
      held = held + 1
      promoted[#promoted + 1] = waiter
    end
    -- Woken waiters go to the head of their ready lanes, longest-waiting first.
    for i = #promoted, 1, -1 do push_ready(promoted[i], true, 'read') end
    if redis.call('EXISTS', pkey, pz) == 0 then
      redis.call('SREM', k('parked_keys'), key)
    end
  end
  if (held or redis.call('SCARD', skey)) == 0 then redis.call('SREM', k('slot_keys'), key) end
end

-- Free every slot <id> (fields <f>) holds, its running key's and its budgets', and hand them to
-- the waiters that now fit: what every end of a run does, whichever way it ends.
local function release_all(id, f, now)
  release_slot(id, f.key, f.limit)
  if f.budgets then budget_steps().release(id, f, now) end
end

-- Put <id>, registered again after running, first in line for its key and in the ready queue.
local function first_in_line(id, f, now)
  take_regkey(id, f.regkey)
  Q.lane(id, f)
  if f.budgets then  -- the woken waiters go ahead of it, then it goes first
    budget_steps().release(id, f, now)
    push_ready(id, true, f.queue, f.priority)
    return
  end
  if f.key == '' then
    push_ready(id, true, f.queue, f.priority)
    return
  end
  Q.lanes().park(id, f, true)
  release_slot(id, f.key, f.limit)
end

-- Put running <id> back first in line for its key and in the ready queue, as REGISTERED.
local function requeue_first(id, f, now, runner)
  redis.call('ZREM', k('leases'), id)
  transition(id, f, 'registered', now, runner, 'runner_id', '',
    'lease_expires_at', '')
  first_in_line(id, f, now)
end

-- The fields scripts need about <id>, or nil when it does not exist. The arguments ('a', the
-- largest field but for the history, and only needed to hand a claim out) only
-- <with_arguments>: else the last field asked for is the task ('t') again, so that there is one
-- fixed-arity call.
local function fields(id, with_arguments)
  local v = redis.call('HMGET', P .. 'inv:' .. id, 't', 's', 'registration_key',
    'running_key', 'running_limit', 'drop_when_blocked', 'runner_id', 'attempt', 'num_retries',
    'max_retries', 'num_recoveries', 'hn', 'waited', 'budgets', 'cancel_requested',
    with_arguments and 'a' or 't')
  if not v[1] then return nil end
  -- Absent fields are at their defaults (see register.lua). Queue and priority: see Q.lane.
  return {task = v[1], status = v[2] or 'registered', regkey = v[3] or '', key = v[4] or '',
    limit = (v[5] or 1) + 0, drop = v[6] == '1', runner = v[7] or '',
    attempt = (v[8] or 0) + 0, num_retries = (v[9] or 0) + 0,
    max_retries = (v[10] or 0) + 0, num_recoveries = (v[11] or 0) + 0,
    hn = (v[12] or 0) + 0, waited = v[13] == '1', budgets = v[14],
    cancel_requested = v[15] == '1', arguments = with_arguments and v[16] or nil}
end

-- The fields the end of a plain run needs (fencing, history, counts, and what tells whether
-- the end needs more: a key, budgets, a cancel request; see more_fields), or nil. A listpack
-- hash finds a field by a scan, a whole one for an absent field: the 6 fields left out, absent
-- in the usual record, cost ~1.5k server instructions each.
local function run_fields(id)
  local v = redis.call('HMGET', P .. 'inv:' .. id, 't', 's', 'runner_id', 'attempt',
    'hn', 'running_key', 'running_limit', 'budgets', 'waited', 'cancel_requested')
  if not v[1] then return nil end
  return {task = v[1], status = v[2] or 'registered', runner = v[3] or '',
    attempt = (v[4] or 0) + 0, hn = (v[5] or 0) + 0, key = v[6] or '',
    limit = (v[7] or 1) + 0, budgets = v[8], waited = v[9] == '1',
    cancel_requested = v[10] == '1'}
end

-- Complete <f> from run_fields with the rest of what fields() reads (the arguments aside).
local function more_fields(id, f)
  local v = redis.call('HMGET', P .. 'inv:' .. id, 'registration_key', 'drop_when_blocked',
    'num_retries', 'max_retries', 'num_recoveries')
  f.regkey, f.drop = v[1] or '', v[2] == '1'
  f.num_retries, f.max_retries = (v[3] or 0) + 0, (v[4] or 0) + 0
  f.num_recoveries = (v[5] or 0) + 0
  return f
end

-- The fields a claim of ready <id> needs (see fields()), or nil. The arguments among them, and
-- the others only when it has budgets or is dropped when blocked (those of finalize): the plain
-- path then scans the record for 9 absent fields, not 13, a running key's with one call.
local function claim_fields(id)
  local key = P .. 'inv:' .. id
  local v = redis.call('HMGET', key, 't', 's', 'registration_key', 'running_key',
    'running_limit', 'drop_when_blocked', 'attempt', 'num_retries', 'max_retries', 'hn',
    'budgets', 'a')
  if not v[1] then return nil end
  local f = {task = v[1], status = v[2] or 'registered', regkey = v[3] or '', key = v[4] or '',
    limit = (v[5] or 1) + 0, drop = v[6] == '1', attempt = (v[7] or 0) + 0,
    num_retries = (v[8] or 0) + 0, max_retries = (v[9] or 0) + 0,
    hn = (v[10] or 0) + 0, budgets = v[11], arguments = v[12]}
  if f.drop or f.budgets then
    v = redis.call('HMGET', key, 'runner_id', 'num_recoveries', 'waited', 'cancel_requested')
    f.runner, f.num_recoveries = v[1] or '', (v[2] or 0) + 0
    f.waited, f.cancel_requested = v[3] == '1', v[4] == '1'
  end
  return f
end

-- <id> if <runner> still runs <attempt> of it (the fencing check); its fields, with
-- the arguments only <with_arguments>; only those of run_fields when <run_only>.
local function owned(id, runner, attempt, with_arguments, run_only)
  local f
  if run_only then f = run_fields(id) else f = fields(id, with_arguments) end
  if f and f.status == 'running' and f.runner == runner and f.attempt == attempt + 0 then
    return f
  end
  return nil
end

-- Take (or keep a handed-over) slot; park or drop the invocation when its key is full.
-- <seen>: what this claim learnt of keys already: seen.held[key], the size of its slot set (a
-- claim only ever adds to it), and seen.listed[key], true once it is in 'parked_keys'. So a
-- claim meeting a hot key's backlog counts the key's slots and lists it once, not per waiter.
local function take_slot(id, f, now, ttl, seen)
  if f.key == '' then return true end
  local skey = k('slots:' .. f.key)
  if redis.call('SISMEMBER', skey, id) == 1 then return true end
  local held = seen.held[f.key] or redis.call('SCARD', skey)
  if held < f.limit then
    redis.call('SADD', skey, id)
    redis.call('SADD', k('slot_keys'), f.key)
    seen.held[f.key] = held + 1
    return true
  end
  seen.held[f.key] = held
  if f.drop then
    release_regkey(id, f.regkey)
    finalize(id, f, 'concurrency_controlled_final', now, nil, nil, nil, ttl)
  else
    transition(id, f, 'concurrency_controlled', now, nil)
    if Q.lane(id, f).priority == 0 then
      redis.call('RPUSH', k('parked:' .. f.key), id)
      if not seen.listed[f.key] then redis.call('SADD', k('parked_keys'), f.key) end
    else
      Q.lanes().park(id, f, false)
    end
    seen.listed[f.key] = true
  end
  return false
end

-- Ready invocations one claim may park (or drop) before it returns: a hot key's backlog is
-- parked this many at a time, by claims in turn, never in one script that holds the server for
-- the whole backlog (100,000 waiters: seconds). A claim that stops there sets Q.more: its
-- claimer looks again at once (Backend.claim), so ready work behind them waits for no wake-up.
local CLAIM_PARK_MAX = 32

-- Hand up to <max_count> ready invocations of the queues in <serves> (nil: all) to <runner>
-- (see Backend.claim). Returns a list of {id, task_id, arguments, attempt, num_retries,
-- max_retries}. Stops early, Q.more set, once it parked or dropped CLAIM_PARK_MAX of them.
local function claim_ready(runner, max_count, lease, ttl, now, serves)
  local claims, lease_expires, lease_score, refused, seen = {}, nil, nil, 0, nil
  -- move_due looked at 'timed' first: its marker tells whether lanes exist.
  if Q.marked == nil then Q.marked = redis.call('EXISTS', k('lanes')) == 1 end
  while #claims < max_count do
    -- The next ready id of the queues served. Without lanes (the plain path), one LPOP.
    local id
    if Q.marked then
      id = Q.lanes().pop(serves)
    elseif not serves or serves['default'] then
      id = redis.call('LPOP', k('queue'))
    end
    if not id then break end
    local f = claim_fields(id)
    local admitted = false
    if f then
      if f.budgets then
        admitted = budget_steps().admit(id, f, now, ttl, f.attempt + 1)
      else
        -- What the claim learns of keys (see take_slot), made when it meets one.
        if not seen and f.key ~= '' then seen = {held = {}, listed = {}} end
        admitted = take_slot(id, f, now, ttl, seen)
      end
    end
    if admitted then
      release_regkey(id, f.regkey)
      local attempt = f.attempt + 1
      if not lease_expires then
        lease_expires, lease_score = time_text(now + lease), micros_text(now + lease)
      end
      redis.call('ZADD', k('leases'), lease_score, id)
      transition(id, f, 'running', now, runner, 'attempt', string.format('%d', attempt),
        'runner_id', runner, 'lease_expires_at', lease_expires)
      claims[#claims + 1] = {id, f.task, f.arguments, attempt, f.num_retries, f.max_retries}
    else  -- parked, dropped, or gone (purged): looked at all the same
      refused = refused + 1
      if refused >= CLAIM_PARK_MAX then
        Q.more = true
        break
      end
    end
  end
  -- Work left behind: pass the baton to another idle runner (and to one serving each queue
  -- with work among the runners that serve only some queues). None left: nobody to wake.
  if #claims > 0 and runners_waiting() then
    -- Q.marked false: 'lanes' did not exist when move_due looked, and no lane was pushed since.
    if redis.call('LLEN', k('queue')) > 0
      or (Q.marked and redis.call('EXISTS', k('lanes')) == 1) then
      wake()
      if redis.call('ZCARD', k('idleq')) > 0 then
        for queue in pairs(Q.lanes().queues_with_work()) do Q.lanes().wake_queue(queue) end
      end
    end
  end
  return claims
end

-- Record the outcome of a run if <runner> still owns <attempt> (see Backend.finish). A retry
-- with a <delay> (seconds as text; '' or '0' for none) waits on 'timed' until now + delay
-- instead of going back to the queue. Returns 1 when recorded, 0 for a stale claim.
local function finish_one(id, runner, attempt, kind, payload, ttl, now, delay)
  local f = owned(id, runner, attempt, false, true)
  if not f then return 0 end
  -- A success or failure without budgets or a cancel request needs no other field (a retry and
  -- a cancel do: the registration key, the retries).
  local plain = (kind == 'success' or kind == 'failed') and not f.cancel_requested
  if not plain or f.budgets then more_fields(id, f) end
  if f.cancel_requested or kind == 'cancelled' then  -- whatever the body did: cancelled
    release_regkey(id, f.regkey)
    finalize(id, f, 'cancelled', now, runner, nil, kind ~= 'success' and payload or nil, ttl)
  elseif kind == 'retry' then
    redis.call('ZREM', k('leases'), id)
    transition(id, f, 'retry', now, runner, 'runner_id', '', 'lease_expires_at', '',
      'num_retries', string.format('%d', f.num_retries + 1), 'error', payload)
    take_regkey(id, f.regkey)
    local wait = delay and tonumber(delay)
    Q.lane(id, f)
    if wait and wait > 0 then
      add_timed(id, now + wait, f.queue, f.priority)
    else
      push_ready(id, false, f.queue, f.priority)
    end
  elseif kind == 'success' then
    finalize(id, f, 'success', now, runner, payload, nil, ttl)
  else
    finalize(id, f, 'failed', now, runner, nil, payload, ttl)
  end
  release_all(id, f, now)
  return 1
end
