"""Backends, chosen by URL scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from taskgate.backends.base import Backend, BackendOptions
from taskgate.errors import ConfigError

SUPPORTED_SCHEMES = ("memory", "sqlite", "redis", "rediss")


def create_backend(url: str, options: BackendOptions) -> Backend:
    """Build the backend named by ``url``.

    Raises:
        ConfigError: the URL is malformed or names a scheme this version does not support.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"invalid backend URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"invalid backend URL {url!r}: a memory URL is just 'memory://'")
        from taskgate.backends.memory import MemoryBackend

        return MemoryBackend(options)
    if scheme == "sqlite":
        return _sqlite_backend(url, parts.netloc, parts.path, options)
    if scheme in ("redis", "rediss"):
        return _redis_backend(url, options)
    raise ConfigError(
        f"invalid backend URL {url!r}: unsupported scheme {scheme or '(none)'!r}; "
        f"supported: {', '.join(s + '://' for s in SUPPORTED_SCHEMES)}"
    )


__all__ = ["Backend", "BackendOptions", "create_backend"]


def _sqlite_backend(url: str, netloc: str, path: str, options: BackendOptions) -> Backend:
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""
    from pathlib import Path

    from taskgate.backends.sqlite import SqliteBackend

    # urlsplit keeps the slash after the empty host: strip exactly one.
    file_path = path[1:] if path.startswith("/") else path
    if netloc or not file_path or file_path.endswith("/"):
        raise ConfigError(
            f"invalid backend URL {url!r}: use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    return SqliteBackend(Path(file_path), options)


def _redis_backend(url: str, options: BackendOptions) -> Backend:
    """``redis://[:password@]host:port/db`` or ``rediss://...`` (TLS); Valkey works the same."""
    try:
        from taskgate.backends.redis import RedisBackend
    except ImportError as exc:
        raise ConfigError(
            f"backend URL {url!r} needs the redis client: pip install 'taskgate[redis]'"
        ) from exc
    try:
        return RedisBackend(url, options)
    except ValueError as exc:
        raise ConfigError(f"invalid backend URL {url!r}: {exc}") from exc
