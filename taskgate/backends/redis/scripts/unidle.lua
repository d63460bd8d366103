-- unidle: a runner stops waiting for work (its claim returns); hand it what register handed
-- it meanwhile, so nothing is left in its inbox.
-- KEYS[1] prefix
-- ARGV runner_id, lease_seconds, queues (as in claim), result_ttl_seconds
-- Returns claims (as claim).
-- Its entry in 'idle' (and in 'idleq' when it serves only some queues), as claim_next made it.
local member = ARGV[1] .. '\31' .. ARGV[2]
if ARGV[3] ~= '' then
  member = member .. '\31' .. ARGV[3]
  redis.call('ZREM', k('idleq'), member)
end
redis.call('ZREM', k('idle'), member)
return take_handed(ARGV[1], {}, tonumber(ARGV[4]))
