-- expire: delete up to <batch> final invocations past their result TTL, with every index entry
-- that names them (the backend calls it until a batch comes back short).
-- KEYS[1] prefix
-- ARGV now ('' = server time), batch
-- Returns how many it deleted.
local now = now_from(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', k('expiry'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
-- Deletes first: on a full server (noeviction) Redis 6.2 refuses a script's first write when
-- it may take memory (count's HINCRBY), not once the script has written; Redis 7 runs this
-- function anyway ('allow-oom', lua.py). Expiry frees what a full server lacks.
for _, id in ipairs(ids) do
  local v = redis.call('HMGET', k('inv:' .. id), 'task_id', 'status')
  redis.call('DEL', k('inv:' .. id), k('done:' .. id))
  redis.call('ZREM', k('expiry'), id)
  if v[1] then
    redis.call('ZREM', k('task:' .. v[1]), id)
    count(v[1], v[2], -1)
  end
end
return #ids
