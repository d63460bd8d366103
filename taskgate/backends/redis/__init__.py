"""The Redis backend (also Valkey): runners on many hosts share one store."""

from taskgate.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
