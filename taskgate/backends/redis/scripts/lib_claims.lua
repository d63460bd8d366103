-- Claims and what takes them back (needs lib_core.lua and lib.lua): register's hand-overs to a
-- waiting runner's inbox (read, cancelled unread, or taken back from a runner that never read
-- them), the next claim of a runner, and the recovery of a run whose lease ended.

-- Take the item of <id> out of <runner>'s inbox, where register handed it over: true when it
-- was there unread (it never started, and now its runner never reads it).
local function pop_unread(id, runner)
  local inbox, prefix = k('inbox:' .. runner), id .. '\31'
  for _, item in ipairs(redis.call('LRANGE', inbox, '0', '-1')) do
    if string.sub(item, 1, #prefix) == prefix then
      return redis.call('LREM', inbox, '1', item) == 1
    end
  end
  return false
end

-- End <id> (fields <f>), handed to a runner that has not read it, cancelled: it never started,
-- so its slot, its budgets' slots and its rate starts are given back. <runner>: the one the
-- history entry names (nil: none).
local function cancel_unread(id, f, now, runner, ttl)
  finalize(id, f, 'cancelled', now, runner, nil, nil, ttl)
  if f.budgets then budget_steps().forget_handed_start(id, f) end
  release_all(id, f, now)
end

-- The invocations register handed to <runner> while it waited, that it still owns.
local function take_handed(runner, claims, ttl)
  local inbox = k('inbox:' .. runner)
  local item = redis.call('LPOP', inbox)
  while item do
    local id = string.sub(item, 1, string.find(item, '\31', 1, true) - 1)
    local f = owned(id, runner, 1, true)
    if f and f.cancel_requested then  -- cancelled before its runner read it: it never starts
      cancel_unread(id, f, now_number or server_now(), runner, ttl)
    elseif f then
      claims[#claims + 1] = {id, f.task, f.arguments, 1, f.num_retries, f.max_retries}
    end
    item = redis.call('LPOP', inbox)
  end
  return claims
end

-- An inbox unread for this long (seconds) is a dead runner's: a live one pops it at once.
local HANDED_GRACE = 2.0
-- Inboxes looked at per call (as many as there are runners that were handed something).
local HANDED_BATCH = '100'

-- Undo register's hand-over of <id> (fields <f>) to a runner that never read it: the record is
-- as register would have stored it without one (registered, attempt 0, the hand-over's
-- 'running' entry dropped from the history: that run never started), first in line again.
-- <now>: the caller's time (nil: the server's).
local function undo_hand_over(id, f, now)
  local key = k('inv:' .. id)
  redis.call('ZREM', k('leases'), id)
  if f.hn == 1 then
    redis.call('HDEL', key, 'h1', 'hn')
  else
    redis.call('HDEL', key, 'h' .. string.format('%d', f.hn))
    redis.call('HSET', key, 'hn', string.format('%d', f.hn - 1))
  end
  redis.call('HSET', key, 's', 'registered', 'attempt', '0', 'runner_id', '',
    'lease_expires_at', '')
  count(f.task, f.status, -1)
  count(f.task, 'registered', 1)
  f.status, f.hn, f.attempt = 'registered', math.max(f.hn - 1, 0), 0
  if f.budgets then budget_steps().forget_handed_start(id, f) end
  first_in_line(id, f, now or now_number or server_now())
end

-- Take <runner> out of the line for hand-overs, whatever lease (and queues) its entries name.
local function leave_line(runner)
  local prefix = runner .. '\31'
  for _, member in ipairs(redis.call('ZRANGE', k('idle'), 0, -1)) do
    if string.sub(member, 1, #prefix) == prefix then
      redis.call('ZREM', k('idle'), member)
      redis.call('ZREM', k('idleq'), member)
    end
  end
end

-- Take back everything left in <runner>'s inbox, as if it had never been handed over: each
-- item is either popped by its runner (BLPOP, or take_handed) or popped here, never both.
-- Appends the ids taken back to <taken> and returns it.
local function take_back_inbox(runner, taken)
  local inbox = k('inbox:' .. runner)
  local item = redis.call('LPOP', inbox)
  while item do
    local id = string.sub(item, 1, string.find(item, '\31', 1, true) - 1)
    -- Not owned any more: recovered once its lease expired; the item is merely dropped.
    local f = owned(id, runner, 1)
    if f then
      undo_hand_over(id, f)
      taken[#taken + 1] = id
    end
    item = redis.call('LPOP', inbox)
  end
  redis.call('ZREM', k('inboxes'), runner)
  return taken
end

-- Take back what register handed to runners that left their inbox unread for HANDED_GRACE
-- seconds (see 'inboxes'). Returns how many invocations were taken back.
local function take_back_unread(now)
  local stale = redis.call('ZRANGEBYSCORE', k('inboxes'), '-inf',
    '(' .. micros_text(now - HANDED_GRACE), 'LIMIT', '0', HANDED_BATCH)
  local taken = {}
  for _, runner in ipairs(stale) do
    -- An inbox its runner emptied only loses its date; one left unread means the runner is
    -- gone: out of the line too.
    if redis.call('LLEN', k('inbox:' .. runner)) > 0 then leave_line(runner) end
    take_back_inbox(runner, taken)
  end
  return #taken
end

-- What <runner> claims next: what was handed to it, then ready invocations up to <max_count>.
-- With nothing to claim and <idle_for> > 0, the runner is recorded as waiting for work (until
-- <idle_for> seconds from now), so that register hands it the next invocation directly;
-- otherwise it is not waiting any more. <lease> is the raw argument (part of the idle entry).
-- Also returns whether a claim of ready work took something (and so passed the baton for what
-- it left behind): claims taken from the inbox alone pass none.
local function claim_next(runner, max_count, lease, ttl, now, idle_for, queues_text)
  if max_count <= 0 then return {}, false end
  -- What falls due waits for this claim before anyone is woken for it (move_due defers it, see
  -- there; the runner is still in line here, and would count as one to wake): this claim
  -- takes it, and passes the baton for what it leaves behind, or the queues are notified below.
  move_due(now)
  local deferred = Q.deferred
  Q.deferred = nil
  -- Out of line first: a baton passed by claim_ready is for the other waiting runners.
  -- Its entry in 'idle' (and 'idleq' when it serves only the queues <queues_text>).
  local member, restricted = runner .. '\31' .. lease, queues_text and queues_text ~= ''
  if restricted then member = member .. '\31' .. queues_text end
  redis.call('ZREM', k('idle'), member)
  if restricted then redis.call('ZREM', k('idleq'), member) end
  local serves = restricted and Q.lanes().queue_set(queues_text) or nil
  local claims, batoned = take_handed(runner, {}, ttl), false
  if #claims < max_count then
    local more = claim_ready(runner, max_count - #claims, lease + 0, ttl, now, serves)
    for _, claim in ipairs(more) do claims[#claims + 1] = claim end
    batoned = #more > 0
  end
  Q.notify_deferred(deferred, batoned)
  -- Q.more: the claimer looks again at once, so it does not wait in line yet.
  if #claims == 0 and idle_for > 0 and not Q.more then
    -- About to wait: first take back what dead runners were handed, and claim that instead
    -- (busy runners never get here, so this costs them nothing).
    if take_back_unread(now) > 0 then
      claims = claim_ready(runner, max_count, lease + 0, ttl, now, serves)
      batoned = #claims > 0
    end
    if #claims == 0 and not Q.more then
      local until_text = micros_text(now + idle_for)
      redis.call('ZADD', k('idle'), until_text, member)
      if restricted then redis.call('ZADD', k('idleq'), until_text, member) end
    end
  end
  return claims, batoned
end

-- Take running <id> (fields <f>) back from its runner: first in line again, or failed once it
-- was recovered <max_recoveries> times already (see Backend.recover).
local function recover_one(id, f, now, max_recoveries, lost_error, ttl)
  -- Still unread in its runner's inbox (a lease shorter than HANDED_GRACE): it never started.
  -- Out of there, or its runner, alive but late, would run it beside the next attempt.
  if f.attempt == 1 and pop_unread(id, f.runner) then return undo_hand_over(id, f, now) end
  if f.cancel_requested or f.num_recoveries >= max_recoveries then
    if f.cancel_requested then
      release_regkey(id, f.regkey)
      finalize(id, f, 'cancelled', now, nil, nil, nil, ttl)
    else
      finalize(id, f, 'failed', now, nil, nil, lost_error, ttl)
    end
    release_all(id, f, now)
  else
    redis.call('HINCRBY', k('inv:' .. id), 'num_recoveries', '1')
    requeue_first(id, f, now, nil)
  end
end
