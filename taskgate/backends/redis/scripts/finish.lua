-- finish: record the outcome of a run if the runner still owns the attempt (fencing).
-- KEYS[1] prefix
-- ARGV id, runner_id, attempt, kind ('success' | 'failed' | 'retry'), payload,
--      result_ttl_seconds
-- Returns 1 when recorded, 0 for a stale claim.
return finish_one(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), server_now())
