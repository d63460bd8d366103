"""The SQLite backend (the embedded default): many processes on one host share one file."""

from taskgate.backends.sqlite.backend import SqliteBackend

__all__ = ["SqliteBackend"]
