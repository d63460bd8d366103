-- claim: hand up to max_count ready invocations to a runner (see Backend.claim).
-- KEYS[1] prefix
-- ARGV runner_id, max_count, lease_seconds, result_ttl_seconds
-- Returns a list of {id, task_id, arguments, attempt, num_retries, max_retries}.
local runner, max_count, lease, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local now = server_now()
local claims = {}

-- Take (or keep a handed-over) slot; park or drop the invocation when its key is full.
local function take_slot(id, f)
  if f.key == '' then return true end
  local skey = k('slots:' .. f.key)
  if redis.call('SISMEMBER', skey, id) == 1 then return true end
  if redis.call('SCARD', skey) < f.limit then
    redis.call('SADD', skey, id)
    redis.call('SADD', k('slot_keys'), f.key)
    return true
  end
  if f.drop then
    release_regkey(id, f.regkey)
    finalize(id, f.task, f.status, 'concurrency_controlled_final', now, nil, nil, nil, ttl)
  else
    transition(id, f.task, f.status, 'concurrency_controlled', now, nil)
    redis.call('RPUSH', k('parked:' .. f.key), id)
    redis.call('SADD', k('parked_keys'), f.key)
  end
  return false
end

while #claims < max_count do
  local id = redis.call('LPOP', k('queue'))
  if not id then break end
  local f = fields(id)
  if f and take_slot(id, f) then
    release_regkey(id, f.regkey)
    local attempt = f.attempt + 1
    redis.call('HSET', k('inv:' .. id), 'attempt', attempt, 'runner_id', runner,
      'lease_expires_at', now + lease)
    redis.call('ZADD', k('leases'), now + lease, id)
    transition(id, f.task, f.status, 'running', now, runner)
    claims[#claims + 1] = {id, f.task, f.arguments, attempt, f.num_retries, f.max_retries}
  end
end
return claims
