-- unidle: a runner stops waiting for work (its claim returns); hand it what register handed
-- it meanwhile, so nothing is left in its inbox.
-- KEYS[1] prefix
-- ARGV runner_id, lease_seconds, queues (as in claim), result_ttl_seconds
-- Returns claims (as claim).
local member, restricted = idle_member(ARGV[1], ARGV[2], ARGV[3])
redis.call('ZREM', k('idle'), member)
if restricted then redis.call('ZREM', k('idleq'), member) end
return take_handed(ARGV[1], {}, tonumber(ARGV[4]))
