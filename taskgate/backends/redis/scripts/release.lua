-- release: hand a running invocation back without counting a retry (graceful shutdown); one
-- whose cancel was requested ends cancelled instead.
-- KEYS[1] prefix
-- ARGV id, runner_id, attempt, result_ttl_seconds
-- Returns 1 when handed back (or cancelled), 0 for a stale claim.
local id, runner = ARGV[1], ARGV[2]
local f = owned(id, runner, ARGV[3])
if not f then return 0 end
local now = server_now()
if f.cancel_requested then
  finalize(id, f, 'cancelled', now, runner, nil, nil, tonumber(ARGV[4]))
  release_all(id, f, now)
  return 1
end
requeue_first(id, f, now, runner)
return 1
