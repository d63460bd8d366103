-- watch: read an invocation for a result waiter. When it is not final yet, mark the record so
-- that the script making it final pushes a token to done:<id>, which the waiter then blocks on
-- (results nobody waits for cost no list).
-- KEYS[1] prefix
-- ARGV id
-- Returns the HGETALL reply (empty when the invocation does not exist).
local key = k('inv:' .. ARGV[1])
local status = redis.call('HGET', key, 'status')
if not status then return {} end
if not is_final(status) then redis.call('HSET', key, 'waited', '1') end
return redis.call('HGETALL', key)
