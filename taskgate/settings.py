"""App settings: one dataclass, filled from arguments, then ``TASKGATE_<NAME>``, then defaults."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskgate.errors import ConfigError
from taskgate.urls import parse_backend_url, redact_url

ENV_PREFIX = "TASKGATE_"

# An app with no backend configured uses an SQLite file under the current directory, created on
# first use: nothing to install, and runner processes on this host share it. Like every relative
# SQLite URL, it is made absolute when the settings are built (see absolute_backend_url).
DEFAULT_BACKEND_URL = "sqlite:///.taskgate/taskgate.db"

RUNNER_CLASSES = ("ThreadRunner", "ProcessRunner")

DAY = 86400.0

# Inclusive bounds of the numeric settings. Beyond them runners break rather than slow down:
# NaN or infinite times make the Redis scripts fail and the heartbeat die, a lease of
# nanoseconds makes an idle runner spin, and SQLite cannot store integers beyond 64 bits.
LIMITS: dict[str, tuple[float, float]] = {
    "threads": (1, 1024),
    "processes": (1, 1024),
    "lease_seconds": (0.1, DAY),
    "result_ttl_seconds": (0.001, 3650 * DAY),
    "shutdown_grace_seconds": (0.0, DAY),
    "max_recoveries": (0, 1000),
    "async_in_flight": (1, 100_000),
}


def _cpu_count() -> int:
    return min(os.cpu_count() or 1, int(LIMITS["processes"][1]))


@dataclass(repr=False)
class Settings:
    """Every setting of an app. Assign attributes before the runner is built to change them.

    Every value is checked when the settings are built and on every assignment: an unknown
    name, a value of the wrong type, NaN, an infinite or out-of-range number, or a malformed
    backend URL raises :class:`~taskgate.errors.ConfigError` at once. Numbers are bounded
    inclusively as listed below (:data:`LIMITS`).

    Attributes:
        backend: Backend URL (``memory://``, ``sqlite:///path``, ``redis://host:port/db``); its
            form is checked here, connecting stays lazy.
        serializer: ``"pickle"`` (default, any picklable value) or ``"json"``.
        runner_cls: ``"ThreadRunner"`` or ``"ProcessRunner"``.
        threads: Worker threads of a ThreadRunner (default 8), or of each ProcessRunner worker
            process (default 1); ``None`` means the runner's default. 1 to 1024.
        processes: Worker processes of a ProcessRunner (default: the CPU count). 1 to 1024.
        lease_seconds: How long a claim lives without renewal; 0.1 s to one day (default 30).
        result_ttl_seconds: How long a final invocation and its result are kept; 1 ms to ten
            years (default one day).
        shutdown_grace_seconds: How long a stopping runner waits for running tasks before it
            hands them back to the queue; 0 to one day (default 10).
        max_recoveries: How many times an invocation whose runner died is requeued before it is
            failed (guards against a task that kills its runner every time); 0 to 1000.
        queues: The queues a runner serves (``TASKGATE_QUEUES``: comma-separated names, e.g.
            ``a,b``); None (default) serves every queue. Names are non-empty, without
            whitespace or commas, at most 100 characters.
        async_in_flight: How many ``async def`` invocations one runner (each ProcessRunner
            worker) keeps in flight on its event loop, besides its threads; 1 to 100,000
            (default 100). At the cap, a worker that claimed one waits for one to end before
            claiming more.
        eager: Run every call at once in the caller's thread, for unit tests (default False;
            see :mod:`taskgate.eager`). ``TASKGATE_EAGER`` takes ``1``/``true``/``yes``/``on``
            or ``0``/``false``/``no``/``off``.
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
    queues: tuple[str, ...] | None = None
    async_in_flight: int = 100
    eager: bool = False

    def __post_init__(self) -> None:
        # Not through __setattr__: that validates by building a copy, which lands here again.
        object.__setattr__(self, "backend", absolute_backend_url(self.backend))
        self.validate()

    def __setattr__(self, name: str, value: Any) -> None:
        # Assignments after construction are checked like constructor arguments, so a typo in
        # ``app.conf.runner_cls = ...`` fails where it is made, not when the runner starts.
        if name not in _FIELD_NAMES:
            raise ConfigError(f"unknown setting {name!r}{_did_you_mean([name])}")
        if name in self.__dict__:
            value = _coerce(name, value, _FIELD_TYPES[name])
            if name == "backend":
                value = absolute_backend_url(value)
            dataclasses.replace(self, **{name: value})
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        # Not the dataclass repr: that would show the backend URL with its password.
        shown = {name: getattr(self, name) for name in _FIELD_TYPES}
        if self.backend is not None:
            shown["backend"] = redact_url(self.backend)
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in shown.items())})"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        if self.serializer not in ("pickle", "json"):
            raise ConfigError(f"serializer must be 'pickle' or 'json', got {self.serializer!r}")
        if self.runner_cls not in RUNNER_CLASSES:
            raise ConfigError(
                f"runner_cls must be one of {', '.join(RUNNER_CLASSES)}, got {self.runner_cls!r}"
            )
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            # Written so that NaN, which compares false with everything, fails too.
            if value is not None and not low <= value <= high:
                unit = " seconds" if name.endswith("_seconds") else ""
                raise ConfigError(f"{name} must be from {low:g} to {high:g}{unit}, got {value!r}")
        if self.backend is not None:
            parse_backend_url(self.backend)
        if self.queues is not None:
            check_queue_names("queues", self.queues)

    @property
    def served_queues(self) -> frozenset[str] | None:
        """What runners pass as ``queues=`` to claims: None serves every queue."""
        return None if self.queues is None else frozenset(self.queues)

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
                f"unknown setting(s) {', '.join(unknown)}{_did_you_mean(unknown)}; "
                f"known settings: {', '.join(fields)}"
            )
        values: dict[str, Any] = {}
        for name, spec in fields.items():
            if explicit.get(name) is not None:
                values[name] = _coerce(name, explicit[name], spec.type)
            elif (raw := environ.get(ENV_PREFIX + name.upper())) not in (None, ""):
                values[name] = _coerce(ENV_PREFIX + name.upper(), raw, spec.type)
                if name == "backend":
                    _check_environment_backend(values[name])
        return cls(**values)


def absolute_backend_url(url: str | None) -> str:
    """``url`` (the embedded default when None), checked, with a relative SQLite path made
    absolute.

    A relative path is relative to the current directory *now*, when the settings are built:
    a caller and a runner started in different directories would otherwise use two stores
    without noticing.

    Raises:
        ConfigError: the URL is malformed (the message names it as given, password masked).
    """
    path = sqlite_path(url or DEFAULT_BACKEND_URL)
    if path is None or path.is_absolute():
        return url or DEFAULT_BACKEND_URL
    return f"sqlite:///{Path.cwd() / path}"


def sqlite_path(url: str) -> Path | None:
    """The file an ``sqlite:///path`` URL names, as written; None for other schemes.

    Raises:
        ConfigError: the URL is malformed.
    """
    parsed = parse_backend_url(url)
    return Path(parsed.sqlite_path) if parsed.sqlite_path is not None else None


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Settings)}
_FIELD_NAMES = frozenset(_FIELD_TYPES)


def _did_you_mean(names: list[str]) -> str:
    close = {m for n in names for m in difflib.get_close_matches(n, list(_FIELD_TYPES), n=1)}
    return f" (did you mean {', '.join(sorted(close))}?)" if close else ""


def _check_environment_backend(url: str) -> None:
    try:
        parse_backend_url(url)
    except ConfigError as exc:
        raise ConfigError(f"{ENV_PREFIX}BACKEND: {exc}") from None


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


MAX_QUEUE_NAME = 100


def check_queue_names(name: str, queues: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``queues`` is a non-empty tuple of valid queue names."""
    if not queues:
        raise ConfigError(f"{name} must name at least one queue (None serves every queue)")
    for queue in queues:
        if (
            not isinstance(queue, str)
            or not queue
            or len(queue) > MAX_QUEUE_NAME
            or "," in queue
            or any(c.isspace() for c in queue)
        ):
            raise ConfigError(
                f"{name}: {queue!r} is not a queue name (1 to {MAX_QUEUE_NAME} characters, "
                "no whitespace or commas)"
            )


def _coerce_queues(name: str, value: Any) -> tuple[str, ...]:
    # "a,b" (the environment, the command line) or any iterable of names.
    items = value.split(",") if isinstance(value, str) else value
    try:
        queues = tuple(item.strip() if isinstance(item, str) else item for item in items)
    except TypeError:
        raise ConfigError(f"{name} must be queue names, e.g. 'a,b', got {value!r}") from None
    check_queue_names(name, queues)
    return queues


def _coerce(name: str, value: Any, type_name: Any) -> Any:
    """Convert ``value`` to the declared type of a setting (annotations are strings here)."""
    if type_name == "bool":
        return _coerce_bool(name, value)
    if type_name == "tuple[str, ...] | None":
        return None if value is None else _coerce_queues(name, value)
    optional = str(type_name).endswith(" | None")
    target = {"int": int, "float": float}.get(str(type_name).removesuffix(" | None"), str)
    if value is None and optional:
        return None
    if isinstance(value, bool) or (target is int and isinstance(value, float)):
        raise ConfigError(f"{name} must be {target.__name__}, got {value!r}")
    try:
        return target(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{name} must be {target.__name__}, got {value!r}") from exc


def _coerce_bool(name: str, value: Any) -> bool:
    # Not bool(value): bool("0") and bool("off") are True, the opposite of what they say.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(
        f"{name} must be true or false (1/true/yes/on or 0/false/no/off), got {value!r}"
    )
