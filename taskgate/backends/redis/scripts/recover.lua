-- recover: take back the work of runners whose leases expired or whose hand-overs were never
-- read (expire.lua deletes old results).
-- KEYS[1] prefix
-- ARGV now ('' = server time), max_recoveries, lost_error, result_ttl_seconds, batch
-- Returns the ids recovered or failed.
local now = now_from(ARGV[1])
local max_recoveries, lost_error, ttl, batch = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]),
  tonumber(ARGV[5])
local recovered = {}
local SWEEP_COUNT = '500'
local now_micros = micros_text(now)  -- the scores of 'leases', 'idle' and 'idleq'
local expired = redis.call('ZRANGEBYSCORE', k('leases'), '-inf', '(' .. now_micros, 'LIMIT', 0,
  batch)
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
-- Budgets listed as possibly holding something (see 'lb:' in lib_core.lua) that hold nothing
-- any more (their starts expired, say) leave the list: a step of a sweep over each limit.
for _, limit in ipairs(redis.call('SMEMBERS', k('lnames'))) do
  local list = k('lb:' .. limit)
  local page = redis.call('HSCAN', list, redis.call('HGET', k('bsweep'), limit) or '0', 'COUNT',
    SWEEP_COUNT)
  for i = 1, #page[2], 2 do
    local key = page[2][i]
    if redis.call('EXISTS', k('bh:' .. key), k('bs:' .. key), k('bw:' .. key), k('br:' .. key))
        == 0 then
      redis.call('HDEL', list, key)
    end
  end
  if redis.call('EXISTS', list) == 0 then
    redis.call('SREM', k('lnames'), limit)
    redis.call('HDEL', k('bsweep'), limit)
  else
    redis.call('HSET', k('bsweep'), limit, page[1])
  end
end
redis.call('ZREMRANGEBYSCORE', k('runners'), '-inf', now)
redis.call('ZREMRANGEBYSCORE', k('idle'), '-inf', now_micros)
redis.call('ZREMRANGEBYSCORE', k('idleq'), '-inf', now_micros)
return recovered
