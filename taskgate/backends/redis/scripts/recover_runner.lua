-- recover_runner: take back at once the work of a runner known to be dead (see
-- Backend.recover_runner).
-- KEYS[1] prefix
-- ARGV runner_id, max_recoveries, lost_error, result_ttl_seconds
-- Returns the ids recovered or failed.
local runner, max_recoveries, lost_error, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3],
  tonumber(ARGV[4])
local now = server_now()
local recovered = {}
-- Every running invocation has a lease entry: a scan of those, rare enough (a process died).
for _, id in ipairs(redis.call('ZRANGE', k('leases'), 0, -1)) do
  local f = fields(id)
  if f and f.status == 'running' and f.runner == runner then
    recovered[#recovered + 1] = id
    recover_one(id, f, now, max_recoveries, lost_error, ttl)
  end
end
-- Out of line (whatever lease its entry names) and no longer live; what was handed to its inbox
-- was running under it, so it is recovered above.
local prefix = runner .. '\31'
for _, member in ipairs(redis.call('ZRANGE', k('idle'), 0, -1)) do
  if string.sub(member, 1, #prefix) == prefix then redis.call('ZREM', k('idle'), member) end
end
redis.call('DEL', k('inbox:' .. runner))
redis.call('ZREM', k('inboxes'), runner)
redis.call('ZREM', k('runners'), runner)
return recovered
