-- finish_and_claim: finish one run, then claim the runner's next invocations, atomically.
-- KEYS[1] prefix
-- ARGV id, runner_id, attempt, kind, payload, result_ttl_seconds, max_count, lease_seconds,
--      idle_seconds (as claim), retry_delay (seconds; '' or 0 = none), queues (as claim)
-- Returns {1 or 0 (as finish), claims, due (as claim)}.
local now, ttl = server_now(), tonumber(ARGV[6])
local done = finish_one(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ttl, now, ARGV[10])
local claims = claim_next(ARGV[2], tonumber(ARGV[7]), ARGV[8], ttl, now, tonumber(ARGV[9]),
  ARGV[11])
return {done, claims, due_ms(now)}
