-- page_chunk: one chunk of a page_invocations walk (see redis/pages.py) from each of some task
-- indexes: entries newest first, with each record's status when the page filters by status.
-- Reads only; a chunk of 500 holds the server for well under a millisecond.
-- KEYS[1] prefix
-- ARGV top entry id (inclusive: '+' or "<micros>-<n>"; pages.py starts each chunk at the last
--      entry read, as a count from a moving top would repeat or skip entries), count, '1' to
--      add each record's status, then the indexes under the prefix ('task:<task_id>': a page
--      of every task reads one chunk of each task's index at once)
-- Returns, per index, its entries: invocation id, entry id and, with '1', the status ('' when
-- the record expired since), flat.
local replies = {}
for z = 4, #ARGV do
  local out = {}
  for _, entry in ipairs(redis.call('XREVRANGE', k(ARGV[z]), ARGV[1], '-', 'COUNT', ARGV[2])) do
    local id = entry[2][2]
    out[#out + 1] = id
    out[#out + 1] = entry[1]
    if ARGV[3] == '1' then  -- a record without a status is registered (see register.lua)
      local v = redis.call('HMGET', k('inv:' .. id), 't', 's')
      out[#out + 1] = v[1] and (v[2] or 'registered') or ''
    end
  end
  replies[#replies + 1] = out
end
return replies
