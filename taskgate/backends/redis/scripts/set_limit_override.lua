-- set_limit_override: store a limit's override and wake, in every budget of the limit, the
-- waiters that fit the new values (running work is never touched).
-- KEYS[1] prefix
-- ARGV limit name, override "<concurrency>\31<count>\31<period>" ('' = declared value)
-- Returns nothing.
redis.call('HSET', k('overrides'), ARGV[1], ARGV[2])
budget_steps().wake_limit(ARGV[1], server_now())
