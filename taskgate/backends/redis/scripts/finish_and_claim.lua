-- finish_and_claim: finish one run, then claim the runner's next invocations, atomically.
-- KEYS[1] prefix
-- ARGV id, runner_id, attempt, kind, payload, result_ttl_seconds, max_count, lease_seconds,
--      idle_seconds (as claim), retry_delay (seconds; '' or 0 = none), queues (as claim)
-- Returns {1 or 0 (as finish), claims, due (as claim)}, and a fourth element 1 when the claim
-- stopped early (as claim's third).
local now, ttl, max_count = server_now(), ARGV[6] + 0, ARGV[7] + 0
-- Work the finish makes ready waits for the claim below before anyone is woken for it (see
-- Q.landed); what that claim leaves behind gets its wake-up: from the claim's baton when it
-- claims ready work, else here (also when it claims only what register handed to the runner:
-- the inbox passes no baton, and the freed work may be of a queue the runner does not serve).
if max_count > 0 then Q.deferred = {} end
Q.tally = {}  -- the counts' changes, written once at the end (see count)
local done = finish_one(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ttl, now, ARGV[10])
local deferred = Q.deferred
Q.deferred = nil
local claims, batoned = claim_next(ARGV[2], max_count, ARGV[8], ttl, now, ARGV[9] + 0,
  ARGV[11])
Q.notify_deferred(deferred, batoned)
flush_counts()
return {done, claims, due_ms(now), Q.more and 1 or nil}
