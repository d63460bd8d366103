-- budget_usage: what the budgets of one limit (or of every limit) hold, at one instant.
-- KEYS[1] prefix
-- ARGV limit name (none: every limit; tasks' own running scopes are no limit and left out)
-- Returns a list of {key, limit, holders, waiting, oldest_wait ('' = none), window_starts}, for
-- budgets with holders, waiters or starts in the window; holders a flat list of
-- id, runner_id, lease_expires_at ('' = none).
local now = server_now()
local steps = budget_steps()
local limits = ARGV[1] and {ARGV[1]} or redis.call('SMEMBERS', k('lnames'))

-- The waiters' queues of <key>: the plain one, and one per fairness value.
local function queues(key)
  local found = {k('bw:' .. key)}
  for _, fair in ipairs(redis.call('LRANGE', k('br:' .. key), 0, -1)) do
    found[#found + 1] = k('bw:' .. key .. ':' .. fair)
  end
  return found
end

local result = {}
for _, limit in ipairs(limits) do
  local list = limit ~= '' and redis.call('HGETALL', k('lb:' .. limit)) or {}
  for i = 1, #list, 2 do
    local key = list[i]
    local b = steps.budget_of_def(key, list[i + 1])
    local _, count, period = steps.effective(b)
    local holders = {}
    for _, id in ipairs(redis.call('SMEMBERS', k('bh:' .. key))) do
      local v = redis.call('HMGET', k('inv:' .. id), 'runner_id', 'lease_expires_at')
      holders[#holders + 1] = id
      holders[#holders + 1] = v[1] or ''
      holders[#holders + 1] = v[2] or ''
    end
    -- Counted, never listed: this runs inside Redis, and a backlog may hold many thousands.
    -- Within one priority a queue's head waits longest, so the heads give the oldest wait.
    local waiting, oldest = 0, nil
    for _, queue in ipairs(queues(key)) do
      waiting = waiting + redis.call('ZCARD', queue)
      local head = redis.call('ZRANGE', queue, 0, 0)[1]
      local since = head and tonumber(redis.call('HGET', k('inv:' .. head), 'parked_since'))
      if since and (not oldest or since < oldest) then oldest = since end
    end
    local starts = 0
    if count then
      starts = redis.call('ZCOUNT', k('bs:' .. key), '(' .. time_text(now - period), '+inf')
    end
    if #holders > 0 or waiting > 0 or starts > 0 then
      result[#result + 1] = {key, limit, holders, waiting, oldest and time_text(oldest) or '',
        starts}
    end
  end
end
return result
