-- blocked_by: for a parked invocation, the running key or budget it waits on, the ids holding
-- its slots and, for a budget waiter refused by a rate, when the rate wakes it.
-- KEYS[1] prefix
-- ARGV id
-- Returns {} when not parked, else {key, ready_at ('' = none), holder, ...}.
local id = ARGV[1]
local v = redis.call('HMGET', k('inv:' .. id), 's', 'running_key', 'parked_on',
  'parked_rate')
if v[1] ~= 'concurrency_controlled' then return {} end
local key, slots, ready = v[2], 'slots:', ''
if not key or key == '' then
  key, slots = v[3], 'bh:'
  if not key or key == '' then return {} end
  local at = v[4] == '1' and redis.call('ZSCORE', k('timed'), 'b:' .. key)
  if at then ready = time_text(timed_seconds(at)) end
end
local result = {key, ready}
for _, holder in ipairs(redis.call('SMEMBERS', k(slots .. key))) do
  if holder ~= id then result[#result + 1] = holder end
end
return result
