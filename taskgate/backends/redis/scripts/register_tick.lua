-- register_tick: register a periodic task's tick at most once (see Backend.register_tick);
-- register.lua follows this text in the same script, reading the arguments after ours.
-- KEYS[1] prefix
-- ARGV task_id, tick (epoch seconds), then register.lua's arguments for one record
-- Returns false when the last tick registered for the task is at or after <tick> (nothing
-- changed), else register.lua's reply.
local last = redis.call('HGET', k('ticks'), ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then
  do return false end
end
redis.call('HSET', k('ticks'), ARGV[1], ARGV[2])
ARG_BASE = 2
