-- blocked_by: for a parked invocation, its running key and the ids holding its slots.
-- KEYS[1] prefix
-- ARGV id
-- Returns {} when not parked, else {running_key, holder, ...}.
local id = ARGV[1]
local v = redis.call('HMGET', k('inv:' .. id), 'status', 'running_key')
if v[1] ~= 'concurrency_controlled' or not v[2] or v[2] == '' then return {} end
local result = {v[2]}
for _, holder in ipairs(redis.call('SMEMBERS', k('slots:' .. v[2]))) do
  if holder ~= id then result[#result + 1] = holder end
end
return result
