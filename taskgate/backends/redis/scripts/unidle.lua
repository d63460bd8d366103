-- unidle: a runner stops waiting for work (its claim returns); hand it what register handed
-- it meanwhile, so nothing is left in its inbox.
-- KEYS[1] prefix
-- ARGV runner_id, lease_seconds (as in claim)
-- Returns claims (as claim).
redis.call('ZREM', k('idle'), ARGV[1] .. '\31' .. ARGV[2])
return take_handed(ARGV[1], {})
