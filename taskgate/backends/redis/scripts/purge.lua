-- purge: delete every key of the app.
-- KEYS[1] prefix
-- ARGV (none)
-- Returns the number of invocations deleted.

-- Inboxes: of the runners in line, and of those running something (handed over or not).
for _, member in ipairs(redis.call('ZRANGE', k('idle'), 0, -1)) do
  redis.call('DEL', k('inbox:' .. string.match(member, '^(.*)\31')))
end
for _, id in ipairs(redis.call('ZRANGE', k('leases'), 0, -1)) do
  local runner = redis.call('HGET', k('inv:' .. id), 'runner_id')
  if runner then redis.call('DEL', k('inbox:' .. runner)) end
end
local ids = redis.call('ZRANGE', k('index'), 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', k('inv:' .. id), k('done:' .. id))
end
for i, field in ipairs(redis.call('HKEYS', k('counts'))) do
  redis.call('DEL', k('task:' .. string.match(field, '^(.*)\31')))
end
for _, key in ipairs(redis.call('SMEMBERS', k('parked_keys'))) do
  redis.call('DEL', k('parked:' .. key))
end
for _, key in ipairs(redis.call('SMEMBERS', k('slot_keys'))) do redis.call('DEL', k('slots:' .. key)) end
redis.call('DEL', k('idle'), k('index'), k('parked_keys'), k('slot_keys'), k('queue'), k('wake'),
  k('regkeys'), k('leases'), k('expiry'), k('counts'), k('runners'))
return #ids
