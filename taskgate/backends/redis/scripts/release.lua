-- release: hand a running invocation back without counting a retry (graceful shutdown).
-- KEYS[1] prefix
-- ARGV id, runner_id, attempt
-- Returns 1 when handed back, 0 for a stale claim.
local id, runner = ARGV[1], ARGV[2]
local f = owned(id, runner, ARGV[3])
if not f then return 0 end
requeue_first(id, f, server_now(), runner)
return 1
