"""Backends, chosen by URL scheme."""

from __future__ import annotations

from pathlib import Path

from taskgate.backends.base import Backend, BackendOptions
from taskgate.errors import ConfigError
from taskgate.urls import SUPPORTED_SCHEMES, parse_backend_url, redact_url, scrub_password


def create_backend(url: str, options: BackendOptions) -> Backend:
    """Build the backend named by ``url`` (connecting stays lazy: the first operation connects).

    Raises:
        ConfigError: the URL is malformed or names a scheme this version does not support, or
            the driver it needs is not installed. The message shows the URL password-masked.
    """
    parsed = parse_backend_url(url)
    if parsed.scheme == "memory":
        from taskgate.backends.memory import MemoryBackend

        return MemoryBackend(options)
    if parsed.scheme == "sqlite":
        from taskgate.backends.sqlite import SqliteBackend

        assert parsed.sqlite_path is not None
        return SqliteBackend(Path(parsed.sqlite_path), options)
    return _redis_backend(url, options)


__all__ = ["SUPPORTED_SCHEMES", "Backend", "BackendOptions", "create_backend"]


def _redis_backend(url: str, options: BackendOptions) -> Backend:
    """``redis://[:password@]host:port/db`` or ``rediss://...`` (TLS); Valkey works the same."""
    try:
        from taskgate.backends.redis import RedisBackend
    except ImportError as exc:
        raise ConfigError(
            f"backend URL {redact_url(url)!r} needs the redis client: pip install 'taskgate[redis]'"
        ) from exc
    try:
        return RedisBackend(url, options)
    except ValueError as exc:
        # parse_backend_url accepted it, so this is a redis-py version difference. Its text may
        # quote the URL or part of it: masked here, and not chained (a traceback would show it).
        raise ConfigError(
            f"invalid backend URL {redact_url(url)!r}: {scrub_password(str(exc), url)}"
        ) from None
