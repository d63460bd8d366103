-- recover_runner: take back at once the work of a runner known to be dead (see
-- Backend.recover_runner).
-- KEYS[1] prefix
-- ARGV runner_id, max_recoveries, lost_error, result_ttl_seconds
-- Returns the ids recovered or failed, and those of unread hand-overs taken back.
local runner, max_recoveries, lost_error, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3],
  tonumber(ARGV[4])
local now = server_now()
-- What was handed to it and never read did not start: undone, not recovered (no recovery
-- counted, no run in the history), and returned with the recovered ids.
local recovered = take_back_inbox(runner, {})
-- Every running invocation has a lease entry: a scan of those, rare enough (a process died).
for _, id in ipairs(redis.call('ZRANGE', k('leases'), 0, -1)) do
  local f = fields(id)
  if f and f.status == 'running' and f.runner == runner then
    recovered[#recovered + 1] = id
    recover_one(id, f, now, max_recoveries, lost_error, ttl)
  end
end
-- Out of line and no longer live; its unread cancel requests go (recovery ended those).
leave_line(runner)
redis.call('DEL', k('cancels:' .. runner))
redis.call('SREM', k('cancel_runners'), runner)
redis.call('ZREM', k('runners'), runner)
-- Dead: no longer described either (its description would expire within a lease anyway).
redis.call('HDEL', k('rinfo'), runner)
redis.call('ZREM', k('rinfo_expiry'), runner)
return recovered
