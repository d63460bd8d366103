-- claim: hand up to max_count invocations to a runner (see Backend.claim): those register
-- handed to it while it waited, then ready ones; with none, record it as waiting for work.
-- KEYS[1] prefix
-- ARGV runner_id, max_count, lease_seconds, result_ttl_seconds, idle_seconds (0 = not waiting),
--      queues ("<q1>,<q2>..."; '' = every queue)
-- Returns {claims, due} or {claims, due, 1}: claims a list of {id, task_id, arguments, attempt,
-- num_retries, max_retries}; due the milliseconds until the earliest timed wake-up (-1: none),
-- on the server's clock, so that a claimer finding nothing waits no longer than that; the 1
-- when the claim stopped early (Q.more: it parked its share of blocked invocations) and more
-- may be ready: the claimer looks again at once, and is not in line meanwhile.
local now = server_now()
Q.tally = {}  -- the counts' changes, written once at the end (see count)
local claims = claim_next(ARGV[1], ARGV[2] + 0, ARGV[3], ARGV[4] + 0, now, ARGV[5] + 0, ARGV[6])
flush_counts()
return {claims, due_ms(now), Q.more and 1 or nil}
