-- recover: take back the work of runners whose leases expired or whose hand-overs were never
-- read (expire.lua deletes old results).
-- KEYS[1] prefix
-- ARGV now ('' = server time), max_recoveries, lost_error, result_ttl_seconds, batch
-- Returns the ids recovered or failed.
local now = now_from(ARGV[1])
local max_recoveries, lost_error, ttl, batch = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]),
  tonumber(ARGV[5])
local recovered = {}
local expired = redis.call('ZRANGEBYSCORE', k('leases'), '-inf', '(' .. now, 'LIMIT', 0, batch)
for _, id in ipairs(expired) do
  local f = fields(id)
  if not f or f.status ~= 'running' then
    redis.call('ZREM', k('leases'), id)
  else
    recovered[#recovered + 1] = id
    recover_one(id, f, now, max_recoveries, lost_error, ttl)
  end
end
-- What dead runners were handed and never read, should no idle runner have taken it back yet.
take_back_unread(now)
redis.call('ZREMRANGEBYSCORE', k('runners'), '-inf', now)
redis.call('ZREMRANGEBYSCORE', k('idle'), '-inf', now)
return recovered
