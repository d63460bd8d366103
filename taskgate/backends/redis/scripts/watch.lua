-- watch: read an invocation for a result waiter. When it is not final yet, mark the record so
-- that the script making it final pushes a token to done:<id>, which the waiter then blocks on
-- (results nobody waits for cost no list).
-- KEYS[1] prefix
-- ARGV id
-- Returns the HGETALL reply (empty when the invocation does not exist).
local key = k('inv:' .. ARGV[1])
local v = redis.call('HMGET', key, 't', 's')
if not v[1] then return {} end
if not is_final(v[2] or 'registered') then redis.call('HSET', key, 'waited', '1') end
return redis.call('HGETALL', key)
