-- page_chunk: one chunk of a page_invocations walk (see redis/pages.py) from each of some index
-- zsets: entries newest first, with each record's status when the page filters by status.
-- Reads only; a chunk of 500 holds the server for well under a millisecond.
-- KEYS[1] prefix
-- ARGV top score (inclusive: '+inf' or a score), offset (pages.py passes 0: each chunk starts
--      at the last score read, as an offset from a moving top would repeat or skip entries),
--      count, '1' to add each record's status, then the zset names under the prefix
--      ('task:<task_id>': a page of every task reads one chunk of each task's zset at once)
-- Returns, per zset, its entries: id, score (as ZREVRANGEBYSCORE formats it) and, with '1', the
-- status ('' when the record expired since), flat.
local replies = {}
for z = 5, #ARGV do
  local entries = redis.call('ZREVRANGEBYSCORE', k(ARGV[z]), ARGV[1], '-inf', 'WITHSCORES',
    'LIMIT', ARGV[2], ARGV[3])
  if ARGV[4] == '1' then
    local out = {}
    for i = 1, #entries, 2 do
      local id = entries[i]
      out[#out + 1] = id
      out[#out + 1] = entries[i + 1]
      out[#out + 1] = redis.call('HGET', k('inv:' .. id), 'status') or ''
    end
    entries = out
  end
  replies[#replies + 1] = entries
end
return replies
