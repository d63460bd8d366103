-- announce: store a runner's description (record.RunnerInfo as JSON) until ttl seconds from
-- now, replacing its last one; or drop it (a runner that stops: forget_runner). Descriptions
-- past their time are pruned on the way: a few per app, so nothing else ever has to.
-- KEYS[1] prefix
-- ARGV runner_id, description ('' = drop it), ttl_seconds
-- Returns 1.
local runner, description = ARGV[1], ARGV[2]
local now = time_text(server_now())
local dead = redis.call('ZRANGEBYSCORE', k('rinfo_expiry'), '-inf', now)
if #dead > 0 then
  redis.call('HDEL', k('rinfo'), unpack(dead))
  redis.call('ZREMRANGEBYSCORE', k('rinfo_expiry'), '-inf', now)
end
if description == '' then
  redis.call('HDEL', k('rinfo'), runner)
  redis.call('ZREM', k('rinfo_expiry'), runner)
else
  redis.call('HSET', k('rinfo'), runner, description)
  redis.call('ZADD', k('rinfo_expiry'), time_text(now_number + tonumber(ARGV[3])), runner)
end
return 1
