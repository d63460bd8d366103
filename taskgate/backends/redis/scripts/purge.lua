-- purge: delete every key of the app but the line of runners waiting for work ('idle' and
-- 'idleq'): they are still blocked on their inboxes, and register must keep handing new
-- invocations to them.
-- Limit overrides go too: purge leaves the app as if nothing had ever been stored.
-- KEYS[1] prefix
-- ARGV (none)
-- Returns the number of invocations deleted.

-- Every inbox that may hold something is dated in 'inboxes' (a runner in line has read its own).
for _, runner in ipairs(redis.call('ZRANGE', k('inboxes'), 0, -1)) do
  redis.call('DEL', k('inbox:' .. runner))
end
-- Every invocation is in the index of its task, and 'counts' names every task (a field per
-- status: a task's index is gone after its first). Purge is also how a store of an earlier
-- build is emptied for this one (see 'format' in lib_core.lua): their indexes were zsets.
local deleted = 0
local function delete(id)
  redis.call('DEL', k('inv:' .. id), k('done:' .. id))
  deleted = deleted + 1
end
for _, field in ipairs(redis.call('HKEYS', k('counts'))) do
  local index = index_of_count(field)
  if redis.call('TYPE', index).ok == 'zset' then
    for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do delete(id) end
  else
    for _, entry in ipairs(redis.call('XRANGE', index, '-', '+')) do delete(entry[2][2]) end
  end
  redis.call('DEL', index)
end
for _, bucket in ipairs(redis.call('ZRANGE', k('expb'), 0, -1)) do
  redis.call('DEL', k('exp:' .. bucket))
end
for _, key in ipairs(redis.call('SMEMBERS', k('parked_keys'))) do
  redis.call('DEL', k('parked:' .. key), k('pz:' .. key))
end
for _, member in ipairs(redis.call('ZRANGE', k('lanes'), 0, -1)) do
  redis.call('DEL', k('lane:' .. member))
end
for _, queue in ipairs(redis.call('SMEMBERS', k('wake_queues'))) do
  redis.call('DEL', k('wake:' .. queue))
end
for _, runner in ipairs(redis.call('SMEMBERS', k('cancel_runners'))) do
  redis.call('DEL', k('cancels:' .. runner))
end
for _, key in ipairs(redis.call('SMEMBERS', k('slot_keys'))) do
  redis.call('DEL', k('slots:' .. key))
end
-- Budgets: every one that may hold anything is listed under its limit (see lib_core.lua).
for _, limit in ipairs(redis.call('SMEMBERS', k('lnames'))) do
  for _, key in ipairs(redis.call('HKEYS', k('lb:' .. limit))) do
    for _, fair in ipairs(redis.call('LRANGE', k('br:' .. key), 0, -1)) do
      redis.call('DEL', k('bw:' .. key .. ':' .. fair))
    end
    redis.call('DEL', k('bh:' .. key), k('bw:' .. key), k('br:' .. key), k('bs:' .. key))
  end
  redis.call('DEL', k('lb:' .. limit))
end
-- 'index' and 'expiry': zsets that earlier builds kept (see 'format' in lib_core.lua).
redis.call('DEL', k('format'), k('inboxes'), k('index'), k('parked_keys'), k('slot_keys'),
  k('queue'), k('wake'), k('regkeys'), k('leases'), k('expiry'), k('expb'), k('counts'),
  k('runners'), k('lnames'), k('bwait'), k('timed'), k('overrides'), k('seq'), k('bsweep'),
  k('bwoken'), k('lanes'), k('wake_queues'), k('cancel_runners'), k('ticks'), k('rinfo'),
  k('rinfo_expiry'))
return deleted
