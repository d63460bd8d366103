"""App settings: one dataclass, filled from arguments, then ``TASKGATE_<NAME>``, then defaults."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from taskgate.errors import ConfigError
from taskgate.urls import redact_url

ENV_PREFIX = "TASKGATE_"

# An app with no backend configured uses an SQLite file under the current directory, created on
# first use: nothing to install, and runner processes on this host share it. Like every relative
# SQLite URL, it is made absolute when the settings are built (see absolute_backend_url).
DEFAULT_BACKEND_URL = "sqlite:///.taskgate/taskgate.db"

RUNNER_CLASSES = ("ThreadRunner", "ProcessRunner")


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass
class Settings:
    """Every setting of an app. Assign attributes before the runner is built to change them.

    Attributes:
        backend: Backend URL (``memory://``, ``sqlite:///path``, ``redis://host:port/db``).
        serializer: ``"pickle"`` (default, any picklable value) or ``"json"``.
        runner_cls: ``"ThreadRunner"`` or ``"ProcessRunner"``.
        threads: Worker threads of a ThreadRunner (default 8), or of each ProcessRunner worker
            process (default 1); ``None`` means the runner's default.
        processes: Worker processes of a ProcessRunner (default: the CPU count).
        lease_seconds: How long a claim lives without renewal; fractions allowed.
        result_ttl_seconds: How long a final invocation and its result are kept.
        shutdown_grace_seconds: How long a stopping runner waits for running tasks before it
            hands them back to the queue.
        max_recoveries: How many times an invocation whose runner died is requeued before it is
            failed (guards against a task that kills its runner every time).
    """

    backend: str | None = None
    serializer: str = "pickle"
    runner_cls: str = "ThreadRunner"
    threads: int | None = None
    processes: int = field(default_factory=_cpu_count)
    lease_seconds: float = 30.0
    result_ttl_seconds: float = 86400.0
    shutdown_grace_seconds: float = 10.0
    max_recoveries: int = 3

    def __post_init__(self) -> None:
        # Not through __setattr__: that validates by building a copy, which lands here again.
        object.__setattr__(self, "backend", absolute_backend_url(self.backend))
        self.validate()

    def __setattr__(self, name: str, value: Any) -> None:
        # Assignments after construction are checked like constructor arguments, so a typo in
        # ``app.conf.runner_cls = ...`` fails where it is made, not when the runner starts.
        if name in _FIELD_NAMES and name in self.__dict__:
            value = _coerce(name, value, _FIELD_TYPES[name])
            if name == "backend":
                value = absolute_backend_url(value)
            dataclasses.replace(self, **{name: value})
        super().__setattr__(name, value)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        if self.serializer not in ("pickle", "json"):
            raise ConfigError(f"serializer must be 'pickle' or 'json', got {self.serializer!r}")
        if self.runner_cls not in RUNNER_CLASSES:
            raise ConfigError(
                f"runner_cls must be one of {', '.join(RUNNER_CLASSES)}, got {self.runner_cls!r}"
            )
        for name in ("threads", "processes"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("lease_seconds", "result_ttl_seconds"):
            if not 0 < getattr(self, name) < math.inf:
                raise ConfigError(
                    f"{name} must be a positive number of seconds, got {getattr(self, name)!r}"
                )
        for name in ("shutdown_grace_seconds", "max_recoveries"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)!r}")

    @property
    def backend_url(self) -> str:
        """The backend URL in force (the configured one or the embedded default), absolute."""
        return self.backend or absolute_backend_url(None)

    @property
    def backend_display(self) -> str:
        """The backend URL in force with its password masked: what reprs, logs and CLI show."""
        return redact_url(self.backend_url)

    @classmethod
    def load(
        cls, explicit: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings: explicit values win over ``TASKGATE_<NAME>``, which win over defaults.

        Raises:
            ConfigError: an unknown setting name, or a value of the wrong type or range.
        """
        environ = os.environ if environ is None else environ
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(explicit) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; known settings: {', '.join(fields)}"
            )
        values: dict[str, Any] = {}
        for name, spec in fields.items():
            if explicit.get(name) is not None:
                values[name] = _coerce(name, explicit[name], spec.type)
            elif (raw := environ.get(ENV_PREFIX + name.upper())) not in (None, ""):
                values[name] = _coerce(ENV_PREFIX + name.upper(), raw, spec.type)
        return cls(**values)


def absolute_backend_url(url: str | None) -> str:
    """``url`` (the embedded default when None) with a relative SQLite path made absolute.

    A relative path is relative to the current directory *now*, when the settings are built:
    a caller and a runner started in different directories would otherwise use two stores
    without noticing. Other URLs (and malformed ones, reported when the backend is built) are
    returned unchanged.
    """
    url = url or DEFAULT_BACKEND_URL
    path = sqlite_path(url)
    if path is None or path.is_absolute():
        return url
    query = urlsplit(url).query
    return f"sqlite:///{Path.cwd() / path}" + (f"?{query}" if query else "")


def sqlite_path(url: str) -> Path | None:
    """The file an ``sqlite:///path`` URL names, as written; None for other or malformed URLs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    # urlsplit keeps the slash after the empty host: exactly one is stripped.
    file_path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.scheme.lower() != "sqlite" or parts.netloc or not file_path:
        return None
    if file_path.endswith("/"):
        return None
    return Path(file_path)


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Settings)}
_FIELD_NAMES = frozenset(_FIELD_TYPES)


def _coerce(name: str, value: Any, type_name: Any) -> Any:
    """Convert ``value`` to the declared type of a setting (annotations are strings here)."""
    optional = str(type_name).endswith(" | None")
    target = {"int": int, "float": float}.get(str(type_name).removesuffix(" | None"), str)
    if value is None and optional:
        return None
    if isinstance(value, bool) or (target is int and isinstance(value, float)):
        raise ConfigError(f"{name} must be {target.__name__}, got {value!r}")
    try:
        return target(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be {target.__name__}, got {value!r}") from exc
