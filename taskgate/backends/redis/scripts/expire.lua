-- expire: delete up to <batch> final invocations past their result TTL, with every index entry
-- that names them (the backend calls it until a batch comes back short).
-- KEYS[1] prefix
-- ARGV now ('' = server time), batch
-- Returns how many it deleted.
local now = now_from(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', k('expiry'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local v = redis.call('HMGET', k('inv:' .. id), 'task_id', 'status')
  if v[1] then
    count(v[1], v[2], -1)
    redis.call('ZREM', k('task:' .. v[1]), id)
  end
  redis.call('DEL', k('inv:' .. id), k('done:' .. id))
  redis.call('ZREM', k('index'), id)
  redis.call('ZREM', k('expiry'), id)
end
return #ids
