-- register: store and enqueue an invocation unless its registration key is held.
-- KEYS[1] prefix
-- ARGV id, task_id, arguments, registration_key ('' = none), running_key ('' = none),
--      running_limit, drop_when_blocked ('1'/'0'), max_retries, created_at
-- Returns {1, id} when stored, {0, holder_id, holder_arguments} when folded.
local id, task, regkey = ARGV[1], ARGV[2], ARGV[4]
if regkey ~= '' then
  local holder = redis.call('HGET', k('regkeys'), regkey)
  if holder then
    return {0, holder, redis.call('HGET', k('inv:' .. holder), 'arguments')}
  end
end
local now = server_now()
local seq = redis.call('INCR', k('seq'))
redis.call('HSET', k('inv:' .. id), 'task_id', task, 'arguments', ARGV[3],
  'registration_key', regkey, 'running_key', ARGV[5], 'running_limit', ARGV[6],
  'drop_when_blocked', ARGV[7], 'max_retries', ARGV[8], 'status', 'registered', 'attempt', 0,
  'num_retries', 0, 'num_recoveries', 0, 'runner_id', '', 'lease_expires_at', '',
  'created_at', ARGV[9], 'seq', seq)
redis.call('RPUSH', k('hist:' .. id), cjson.encode({'registered', now, false}))
count(task, 'registered', 1)
redis.call('ZADD', k('index'), seq, id)
redis.call('ZADD', k('task:' .. task), seq, id)
redis.call('SADD', k('tasks'), task)
if regkey ~= '' then redis.call('HSET', k('regkeys'), regkey, id) end
redis.call('RPUSH', k('queue'), id)
wake(1)
return {1, id}
