-- claim: hand up to max_count invocations to a runner (see Backend.claim): those register
-- handed to it while it waited, then ready ones; with none, record it as waiting for work.
-- KEYS[1] prefix
-- ARGV runner_id, max_count, lease_seconds, result_ttl_seconds, idle_seconds (0 = not waiting)
-- Returns a list of {id, task_id, arguments, attempt, num_retries, max_retries}.
return claim_next(ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), server_now(),
  tonumber(ARGV[5]))
