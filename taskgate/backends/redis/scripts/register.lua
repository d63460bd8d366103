-- register: store and enqueue invocations, each unless its registration key is held.
-- KEYS[1] prefix
-- ARGV the number of values per record (9; 11 when a record of the batch uses budgets or a
--      priority other than 0; 12 when one is delayed; 13 when one names a queue other than
--      "default"; 14 when one carries a trace context), then a batch of records: id,
--      task_id, arguments, registration_key ('' = none), running_key ('' = none),
--      running_limit, drop_when_blocked ('1'/'0'), max_retries, created_at (integer
--      microseconds: see index_entry in lib_core.lua); from 11 on, also
--      budgets (record.encode_budgets, '' = none) and priority; from 12 on, also
--      scheduled_for (epoch seconds, '' = none); from 13 on, also queue; with 14, also
--      trace_context ('' = none: the field is not stored). (register_tick.lua runs this
--      script after two arguments of its own: ARG_BASE.)
-- Returns, per record, {1, id} when stored or {0, holder_id, holder_arguments} when folded
-- (a record may fold into one stored earlier in the same batch).
--
-- A record registered while a runner serving its queue waits for work (see 'idle' in
-- lib_core.lua) is claimed for that runner at once and pushed to its inbox: the runner's BLPOP
-- returns it, and neither a wake-up token nor a claim step is needed. With a running key, only
-- when it may start right now and nothing of its key can be ahead of it: a free slot (taken
-- here) and empty ready lanes (parked invocations of the key would mean no free slot). With
-- budgets (limits), likewise: empty ready lanes, no waiter on any of its budgets, and every
-- budget admitting it now; it then takes their slots and rate tokens here, as a claim's
-- admission would (lib_budgets.lua; where that is not loaded, see budget_steps in
-- lib_core.lua, it is queued). Otherwise it is queued, and a claim admits or parks it; a record
-- with budgets carries a registration sequence ('seq') that orders it among a budget's waiters.
--
-- A record with a scheduled_for later than the server's time (a delayed call) is stored
-- 'scheduled' (its registration key taken, so identical calls fold into it) and goes on 'timed'
-- (see add_timed) instead of the queue: the claim that finds it due moves it to the queue's
-- tail.
-- It is never handed over. scheduled_for is stored whenever it is given.

local server_time
-- The runner serving <queue> that has waited longest for work (its entry not expired), taken
-- out of line, and its lease; nil when none is waiting. The longest waiting one serves every
-- queue in the usual case: one ZPOPMIN takes it. Expired entries met on the way are dropped
-- (their runners stopped waiting: a live one is back in line with its next claim); a runner
-- serving only some queues is put back, and then the 64 longest waiting ones are looked at.
local function take_idle_runner(queue)
  local popped = redis.call('ZPOPMIN', k('idle'))
  while popped[1] do
    server_time = server_time or server_now()
    local member = popped[1]
    local sep = string.find(member, '\31', 1, true)
    local restricted = string.find(member, '\31', sep + 1, true)
    if popped[2] + 0 > server_time * 1000000 then  -- microseconds (see micros_text)
      if not restricted then
        return string.sub(member, 1, sep - 1), string.sub(member, sep + 1) + 0
      end
      redis.call('ZADD', k('idle'), popped[2], member)
      break
    end
    if restricted then redis.call('ZREM', k('idleq'), member) end
    popped = redis.call('ZPOPMIN', k('idle'))
  end
  if not popped[1] then return nil end
  local since = '(' .. micros_text(server_time)
  local members = redis.call('ZRANGEBYSCORE', k('idle'), since, '+inf', 'LIMIT', '0', '64')
  for _, member in ipairs(members) do
    local sep = string.find(member, '\31', 1, true)
    local sep2 = string.find(member, '\31', sep + 1, true)
    local served = sep2 and (',' .. string.sub(member, sep2 + 1) .. ',')
    if not served or string.find(served, ',' .. queue .. ',', 1, true) then
      redis.call('ZREM', k('idle'), member)
      if served then redis.call('ZREM', k('idleq'), member) end
      return string.sub(member, 1, sep - 1),
        string.sub(member, sep + 1, (sep2 or 0) - 1) + 0
    end
  end
  return nil
end

-- Append one field and its value to a record being built (fixed arity: no table per call).
local function put(record, field, value)
  local n = #record
  record[n + 1], record[n + 2] = field, value
end

local results = {}
local stride = ARGV[ARG_BASE + 1] + 0
for i = ARG_BASE + 2, #ARGV, stride do
  local budgets = stride > 9 and ARGV[i + 9] or ''
  local priority = stride > 9 and ARGV[i + 10] or '0'
  local at = stride > 11 and ARGV[i + 11] or ''
  local queue = stride > 12 and ARGV[i + 12] or 'default'
  local trace = stride > 13 and ARGV[i + 13] or ''
  local id, task, arguments, regkey = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local holder = regkey ~= '' and redis.call('HGET', k('regkeys'), regkey)
  if holder then
    results[#results + 1] = {0, holder, redis.call('HGET', k('inv:' .. holder), 'a')}
  else
    local runner, lease
    local key = ARGV[i + 4]
    local scheduled, due = false, nil
    if at ~= '' then
      server_time = server_time or server_now()
      due = at + 0
      scheduled = due > server_time
    end
    -- Nobody in line is the usual case under load: one call to find out (the ZPOPMIN of
    -- take_idle_runner without a running key or budgets).
    if not scheduled and budgets == '' and key == '' then
      runner, lease = take_idle_runner(queue)
    elseif not scheduled and runners_waiting() and redis.call('LLEN', k('queue')) == 0
        and redis.call('EXISTS', k('lanes')) == 0 then
      if budgets == '' then
        if redis.call('SCARD', k('slots:' .. key)) < ARGV[i + 5] + 0 then
          runner, lease = take_idle_runner(queue)
          if runner then
            redis.call('SADD', k('slots:' .. key), id)
            redis.call('SADD', k('slot_keys'), key)
          end
        end
      elseif budget_steps then  -- a running key is among the budgets then (key is '')
        server_time = server_time or server_now()
        local steps = budget_steps()
        local list, holders, starts = steps.fresh_admission(budgets, server_time)
        if list then
          runner, lease = take_idle_runner(queue)
          if runner then steps.take(list, id, '1', holders, starts) end
        end
      end
    end
    -- Fields at their defaults are left out and read back as such: no registration or running
    -- key, limit 1, not dropped when blocked, no retries; attempt, num_retries and
    -- num_recoveries (0), runner_id and lease_expires_at (none) too, and the status while it
    -- is 'registered' (its first change writes it). Fewer fields to write, and a queued plain
    -- record of 't', 'a' and 'x' alone fits a 64-byte allocation.
    -- The caller's clock dates a registration (leases and expiry use the server's), in
    -- microseconds: the id of the entry in the task's index (see 'task:<task_id>' in
    -- lib_core.lua), which the record keeps as its 'x', and as 'c' too when the entry had to
    -- follow a later one.
    local entry, moved = index_entry(task, ARGV[i + 8], id)
    local record = {'t', task, 'a', arguments, 'x', entry}
    if moved then put(record, 'c', ARGV[i + 8]) end
    if regkey ~= '' then put(record, 'registration_key', regkey) end
    if key ~= '' then
      put(record, 'running_key', key)
      put(record, 'running_limit', ARGV[i + 5])
    end
    if ARGV[i + 6] == '1' then put(record, 'drop_when_blocked', '1') end
    if ARGV[i + 7] ~= '0' then put(record, 'max_retries', ARGV[i + 7]) end
    if budgets ~= '' then
      put(record, 'budgets', budgets)
      put(record, 'seq', string.format('%d', redis.call('INCR', k('seq'))))
    end
    if priority ~= '0' then put(record, 'priority', priority) end
    if queue ~= 'default' then put(record, 'queue', queue) end
    if at ~= '' then put(record, 'scheduled_for', at) end
    if trace ~= '' then put(record, 'trace_context', trace) end
    local expires
    if runner then
      -- Claimed at once: running, so its registration key is free again (R3).
      expires = time_text(server_time + lease)
      -- The first entry ('registered' when created) is implied (see 'inv:<id>' in lib_core.lua).
      put(record, 'hn', '1')
      put(record, 'h1', history_entry('running', server_time, runner))
      put(record, 's', 'running')
      put(record, 'attempt', '1')
      put(record, 'runner_id', runner)
      put(record, 'lease_expires_at', expires)
    elseif scheduled then
      put(record, 'h0', 's')
      put(record, 's', 'scheduled')
    end
    redis.call('HSET', k('inv:' .. id), unpack(record))
    if runner then
      count(task, 'running', 1)
      redis.call('ZADD', k('leases'), micros_text(server_time + lease), id)
      local inbox = k('inbox:' .. runner)
      -- A runner that died while waiting never reads its inbox: dated, so that what it holds
      -- is taken back after a grace (see take_back_unread), not after a lease.
      if redis.call('RPUSH', inbox, id .. '\31' .. task .. '\31' .. ARGV[i + 7] .. '\31'
          .. arguments) == 1 then
        redis.call('ZADD', k('inboxes'), micros_text(server_time), runner)
      end
    elseif scheduled then
      count(task, 'scheduled', 1)
      if regkey ~= '' then redis.call('HSET', k('regkeys'), regkey, id) end
      add_timed(id, due, queue, priority + 0)
    else
      count(task, 'registered', 1)
      if regkey ~= '' then redis.call('HSET', k('regkeys'), regkey, id) end
      push_ready(id, false, queue, priority + 0)
    end
    results[#results + 1] = {1, id}
  end
end
return results
