-- finish: record the outcome of a run if the runner still owns the attempt (fencing).
-- KEYS[1] prefix
-- ARGV id, runner_id, attempt, kind ('success' | 'failed' | 'retry'), payload,
--      result_ttl_seconds
-- Returns 1 when recorded, 0 for a stale claim.
local id, runner, kind, payload, ttl = ARGV[1], ARGV[2], ARGV[4], ARGV[5], tonumber(ARGV[6])
local f = owned(id, runner, ARGV[3])
if not f then return 0 end
local now = server_now()
if kind == 'retry' then
  leave_running(id)
  redis.call('HINCRBY', k('inv:' .. id), 'num_retries', 1)
  redis.call('HSET', k('inv:' .. id), 'error', payload)
  transition(id, f.task, f.status, 'retry', now, runner)
  take_regkey(id, f.regkey)
  redis.call('RPUSH', k('queue'), id)
  wake(1)
elseif kind == 'success' then
  finalize(id, f.task, f.status, 'success', now, runner, payload, nil, ttl)
else
  finalize(id, f.task, f.status, 'failed', now, runner, nil, payload, ttl)
end
release_slot(id, f.key, f.limit)
return 1
