-- store_format: the layout of the app's store (see 'format' in lib_core.lua), claimed for this
-- build's when the store holds nothing of an earlier one. The first script a process runs is
-- this one (connection.py), purge aside, which empties a store of any layout.
-- KEYS[1] prefix
-- ARGV this build's format
-- Returns the store's format: ARGV[1], or '' for a store written before formats were numbered
-- (records under other field names, zsets as indexes) that still counts invocations.
local format = redis.call('GET', k('format'))
if format then return format end
-- 'counts' keeps a field per task and status, at zero once none is left: those are no bar.
local counts = redis.call('HGETALL', k('counts'))
for i = 2, #counts, 2 do
  if counts[i] ~= '0' then return '' end
end
redis.call('SET', k('format'), ARGV[1])
return ARGV[1]
