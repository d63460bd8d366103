-- page_chunk: one chunk of a page_invocations walk (see redis/pages.py): entries of an index
-- zset, newest first, with each record's status when the page filters by status. Reads only;
-- a chunk of 500 holds the server for well under a millisecond.
-- KEYS[1] prefix
-- ARGV zset name under the prefix ('index' or 'task:<task_id>'), top score (inclusive: '+inf'
--      or a score), offset, count, '1' to add each record's status
-- Returns per entry: id, score (as ZREVRANGEBYSCORE formats it) and, with '1', the status
-- ('' when the record expired since), flat.
local entries = redis.call('ZREVRANGEBYSCORE', k(ARGV[1]), ARGV[2], '-inf', 'WITHSCORES',
  'LIMIT', ARGV[3], ARGV[4])
if ARGV[5] ~= '1' then return entries end
local out = {}
for i = 1, #entries, 2 do
  local id = entries[i]
  out[#out + 1] = id
  out[#out + 1] = entries[i + 1]
  out[#out + 1] = redis.call('HGET', k('inv:' .. id), 'status') or ''
end
return out
