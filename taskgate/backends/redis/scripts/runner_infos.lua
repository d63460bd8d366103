-- runner_infos: the descriptions of the runners whose last announcement has not expired.
-- KEYS[1] prefix
-- ARGV (none)
-- Returns the descriptions (JSON), in no particular order.
local live = redis.call('ZRANGEBYSCORE', k('rinfo_expiry'), '(' .. time_text(server_now()), '+inf')
if #live == 0 then return {} end
return redis.call('HMGET', k('rinfo'), unpack(live))
