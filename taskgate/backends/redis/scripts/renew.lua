-- renew: extend the leases of invocations a runner still owns; announce the runner alive.
-- KEYS[1] prefix
-- ARGV runner_id, lease_seconds, then pairs of (id, attempt)
-- Returns the ids whose claims are stale.
local runner, lease = ARGV[1], tonumber(ARGV[2])
local now = server_now()
local expires, score = time_text(now + lease), micros_text(now + lease)
-- Every heartbeat also takes back what dead runners were handed and never read, so that work
-- returns within a third of a lease even while every live runner is busy.
take_back_unread(now)
redis.call('ZADD', k('runners'), expires, runner)
local lost = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if owned(id, runner, ARGV[i + 1], false, true) then  -- the fencing check alone
    redis.call('HSET', k('inv:' .. id), 'lease_expires_at', expires)
    redis.call('ZADD', k('leases'), score, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
