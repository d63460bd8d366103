-- claim: hand up to max_count ready invocations to a runner (see Backend.claim).
-- KEYS[1] prefix
-- ARGV runner_id, max_count, lease_seconds, result_ttl_seconds
-- Returns a list of {id, task_id, arguments, attempt, num_retries, max_retries}.
return claim_ready(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), server_now())
