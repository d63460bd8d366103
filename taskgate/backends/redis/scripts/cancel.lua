-- cancel: cancel an invocation (see Backend.cancel), one atomic step.
-- KEYS[1] prefix
-- ARGV id, result_ttl_seconds
-- Returns 'cancelled', 'requested', 'final' or 'missing' (record.CancelResult).
--
-- A waiting invocation can sit in one ready lane (registered, retrying, woken from a running
-- key holding the slot handed to it, or woken from a budget counted in 'bwoken'), on 'timed'
-- ("d:<id>" or "i:<id>": scheduled, or retrying after a delay), in parked:<key> or pz:<key>
-- (status concurrency_controlled, or registered when handed back while its key was full), or
-- in a budget's wait queues. Each place is looked at (a cancel is rare: LREM scans its lane); what
-- was handed to it (a slot, a woken count) goes on to the next waiter. A running one that its
-- runner has not read from its inbox yet is taken out of there and never starts: it ends
-- cancelled at once, and the reply is 'requested' all the same (Backend.cancel: a handed-over
-- invocation is running; a caller that saw it RUNNING expects REQUESTED).
local id, ttl = ARGV[1], tonumber(ARGV[2])
local f = fields(id)
if not f then return 'missing' end
if is_final(f.status) then return 'final' end
local now = server_now()
if f.status == 'running' then
  if f.cancel_requested then return 'final' end
  if pop_unread(id, f.runner) then
    cancel_unread(id, f, now, nil, ttl)
    return 'requested'
  end
  redis.call('HSET', k('inv:' .. id), 'cancel_requested', '1')
  redis.call('RPUSH', k('cancels:' .. f.runner), id)
  redis.call('EXPIRE', k('cancels:' .. f.runner), '86400')
  redis.call('SADD', k('cancel_runners'), f.runner)
  return 'requested'
end
redis.call('ZREM', k('timed'), 'd:' .. id, 'i:' .. id)
Q.lane(id, f)
local lane, member = Q.lanes().lane_of(f.queue, f.priority)
local woken = redis.call('LREM', lane, '1', id) == 1
if woken and member and redis.call('EXISTS', lane) == 0 then
  Q.lanes().drop(member)
end
if f.key ~= '' then
  redis.call('LREM', k('parked:' .. f.key), '1', id)
  redis.call('ZREM', k('pz:' .. f.key), id)
  if redis.call('EXISTS', k('parked:' .. f.key), k('pz:' .. f.key)) == 0 then
    redis.call('SREM', k('parked_keys'), f.key)
  end
  -- A slot handed to it while it waited goes on to the next parked waiter.
  if redis.call('SISMEMBER', k('slots:' .. f.key), id) == 1 then
    release_slot(id, f.key, f.limit)
  end
end
if f.budgets and f.status == 'concurrency_controlled' then
  budget_steps().cancel_waiter(id, f, now, woken)
end
release_regkey(id, f.regkey)
finalize(id, f, 'cancelled', now, nil, nil, nil, ttl)
return 'cancelled'
