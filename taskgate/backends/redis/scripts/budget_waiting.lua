-- budget_waiting: how many invocations wait on each budget that has waiters (for stats).
-- KEYS[1] prefix
-- ARGV (none)
-- Returns a flat list: budget key, count, budget key, count, ...
local result = {}
for _, key in ipairs(redis.call('HKEYS', k('bwait'))) do
  local waiting = redis.call('ZCARD', k('bw:' .. key))
  for _, fair in ipairs(redis.call('LRANGE', k('br:' .. key), 0, -1)) do
    waiting = waiting + redis.call('ZCARD', k('bw:' .. key .. ':' .. fair))
  end
  result[#result + 1] = key
  result[#result + 1] = waiting
end
return result
