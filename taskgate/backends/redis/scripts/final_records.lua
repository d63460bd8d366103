-- final_records: the records of those of the given invocations that are final.
-- KEYS[1] prefix
-- ARGV invocation ids
-- Returns a flat list: id, HGETALL reply, id, HGETALL reply, ... (final ones only). Checking
-- the status here keeps a read-ahead over results not final yet cheap: one HGET each.
local found = {}
for _, id in ipairs(ARGV) do
  local key = k('inv:' .. id)
  local status = redis.call('HGET', key, 'status')
  if is_final(status) then
    found[#found + 1] = id
    found[#found + 1] = redis.call('HGETALL', key)
  end
end
return found
