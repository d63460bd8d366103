-- register: store and enqueue invocations, each unless its registration key is held.
-- KEYS[1] prefix
-- ARGV a batch of records, 9 values each: id, task_id, arguments, registration_key ('' =
--      none), running_key ('' = none), running_limit, drop_when_blocked ('1'/'0'),
--      max_retries, created_at
-- Returns, per record, {1, id} when stored or {0, holder_id, holder_arguments} when folded
-- (a record may fold into one stored earlier in the same batch).
local results = {}
for i = 1, #ARGV, 9 do
  local id, task, arguments, regkey = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local holder = regkey ~= '' and redis.call('HGET', k('regkeys'), regkey)
  if holder then
    results[#results + 1] = {0, holder, redis.call('HGET', k('inv:' .. holder), 'arguments')}
  else
    -- attempt, num_retries and num_recoveries start absent (read as 0), runner_id and
    -- lease_expires_at too (read as none): fewer fields to write per call.
    redis.call('HSET', k('inv:' .. id), 'task_id', task, 'arguments', arguments,
      'registration_key', regkey, 'running_key', ARGV[i + 4], 'running_limit', ARGV[i + 5],
      'drop_when_blocked', ARGV[i + 6], 'max_retries', ARGV[i + 7], 'status', 'registered',
      'created_at', ARGV[i + 8])
    -- The caller's clock dates a registration (leases and expiry use the server's).
    local now = tonumber(ARGV[i + 8])
    redis.call('RPUSH', k('hist:' .. id), history_entry('registered', now, nil))
    count(task, 'registered', 1)
    redis.call('ZADD', k('index'), now, id)
    redis.call('ZADD', k('task:' .. task), now, id)
    if regkey ~= '' then redis.call('HSET', k('regkeys'), regkey, id) end
    push_ready(id, false)
    results[#results + 1] = {1, id}
  end
end
return results
