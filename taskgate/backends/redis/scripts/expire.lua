-- expire: delete up to <batch> final invocations past their result TTL, with every index entry
-- that names them (the backend calls it until a batch comes back short).
-- KEYS[1] prefix
-- ARGV now ('' = server time), batch
-- Returns how many it deleted.
local now = now_from(ARGV[1])
local batch = tonumber(ARGV[2])
-- Deletes first: on a full server (noeviction) Redis 6.2 refuses a script's first write when
-- it may take memory (count's HINCRBY), not once the script has written; Redis 7 runs this
-- function anyway ('allow-oom', lua.py). Expiry frees what a full server lacks.
local function delete(id)
  local v = redis.call('HMGET', k('inv:' .. id), 't', 's', 'x')
  redis.call('DEL', k('inv:' .. id), k('done:' .. id))
  if v[1] then
    if v[3] then redis.call('XDEL', k('task:' .. v[1]), entry_id(v[3])) end
    count(v[1], v[2] or 'registered', -1)
  end
end

-- Buckets of seconds begun (see 'expb' in lib_core.lua), oldest first; in each, the due entries
-- at its head. An entry not due yet ends the walk: every later one ends later.
local deleted = 0
local buckets = redis.call('ZRANGEBYSCORE', k('expb'), '-inf', now, 'LIMIT', 0, batch)
for _, bucket in ipairs(buckets) do
  local list = k('exp:' .. bucket)
  local wanted = batch - deleted
  local entries = redis.call('LRANGE', list, 0, string.format('%d', wanted - 1))
  local second, due = tonumber(bucket), 0
  for _, entry in ipairs(entries) do
    local sep = string.find(entry, '\31', 1, true)
    if second + tonumber(string.sub(entry, sep + 1)) / 1000000 > now then break end
    delete(string.sub(entry, 1, sep - 1))
    due = due + 1
  end
  if due > 0 then redis.call('LTRIM', list, string.format('%d', due), '-1') end
  deleted = deleted + due
  if due < #entries then break end
  -- Fewer than wanted: the list is gone (as is one emptied by exactly as many).
  if #entries < wanted or redis.call('EXISTS', list) == 0 then
    redis.call('ZREM', k('expb'), bucket)
  end
  if deleted >= batch then return deleted end
end
return deleted
