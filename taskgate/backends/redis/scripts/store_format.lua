-- store_format: the layout of the app's store (see 'format' in lib_core.lua), claimed for this
-- build's when nothing in it is of another. The first script a process runs is this one
-- (connection.py), purge aside, which empties a store of any layout.
-- KEYS[1] prefix
-- ARGV this build's format
-- Returns ARGV[1] when the store is of this layout (or empty), else the layout found: another
-- build's 'format', or '' for invocations stored before layouts were numbered.
--
-- The evidence is what is there, not a missing 'format': a store emptied under running
-- processes (FLUSHDB, a restart without persistence, a purge) loses the key while they go on
-- registering, and must not be refused for it. Before layout 3 each task's index was a zset:
-- one with entries (a key) means invocations of that layout are still kept. Layout 3 differs
-- from 4 only in the scores of 'timed' (seconds, not microseconds): a layout 3 store with
-- nothing on 'timed' but the marker "l:" (at 0 in both) is of layout 4 as it stands.
local format = redis.call('GET', k('format'))
if format == '3' then
  if redis.call('ZCOUNT', k('timed'), '(0', '+inf') > 0 then return format end
elseif format then
  return format
end
for _, field in ipairs(redis.call('HKEYS', k('counts'))) do
  if redis.call('TYPE', index_of_count(field)).ok == 'zset' then return '' end
end
redis.call('SET', k('format'), ARGV[1])
return ARGV[1]
