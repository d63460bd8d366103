-- reset_limit_override: delete a limit's override (the declared values apply again) and wake,
-- in every budget of the limit, the waiters that fit them.
-- KEYS[1] prefix
-- ARGV limit name
-- Returns nothing.
redis.call('HDEL', k('overrides'), ARGV[1])
budget_steps().wake_limit(ARGV[1], server_now())
