"""Named limits (API.md section 8): declaring them, resolving ``limits=``, their budgets per call,
live overrides and what ``app.limits()`` reports.

A :class:`Limit` is pure declaration: it stores nothing. At call time the core turns each limit a
task uses into a :class:`~taskgate.record.Budget` with a canonical key (``limit llm-api``, or
``limit tenant#tenant_id='42'`` per key value); backends admit an invocation only when every
budget admits it, in one atomic step.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taskgate.canonical import UnkeyableValueError
from taskgate.concurrency import key_values_text
from taskgate.errors import InvalidTaskOptionsError, SerializationError
from taskgate.record import Budget, Rate

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# "M/P": P a number of seconds, a unit alone, or a number with a unit ("5/2.5s", "120/m").
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d*)?|\.\d+)?\s*([smhd]?)\s*$")
_RATE_FORMS = (
    'a rate is "M/P": M a positive whole number of starts, P the window: s, m, h or d, or a '
    'number of seconds, optionally with one of those units ("120/m", "10/30", "5/2.5s"), or '
    "a taskgate.record.Rate(count, period_seconds)"
)


def parse_rate(text: str | Rate) -> Rate:
    """The :class:`~taskgate.record.Rate` written as ``text``.

    Args:
        text: ``"M/P"``: at most M starts (a positive int) within any window of P, where P is
            ``s``, ``m``, ``h`` or ``d``, a number of seconds (``"10/30"``), or a number with
            one of those units (``"5/2.5s"``, ``"3/2m"``); or a ``Rate`` (validated).

    Returns:
        The rate, its period in seconds (a positive finite float).

    Raises:
        InvalidTaskOptionsError: any other value; the message lists the accepted forms.
    """
    if isinstance(text, Rate):
        count, period = text
        if (
            isinstance(count, int)
            and not isinstance(count, bool)
            and count >= 1
            and isinstance(period, int | float)
            and not isinstance(period, bool)
            and math.isfinite(period)
            and period > 0
        ):
            return Rate(count, float(period))
        raise InvalidTaskOptionsError(f"invalid rate {text!r}: {_RATE_FORMS}")
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidTaskOptionsError(f"invalid rate {text!r}: {_RATE_FORMS}")
    count_text, number, unit = match.groups()
    if number is None and not unit:
        raise InvalidTaskOptionsError(f"invalid rate {text!r}: {_RATE_FORMS}")
    count = int(count_text)
    period = float(number or 1) * _UNITS[unit or "s"]
    if count < 1 or not (math.isfinite(period) and period > 0):
        raise InvalidTaskOptionsError(
            f"invalid rate {text!r}: the count and the window must be positive; {_RATE_FORMS}"
        )
    return Rate(count, period)


@dataclass(frozen=True)
class Limit:
    """A named limit declared with :meth:`App.limit <taskgate.app.App.limit>`.

    Declaring stores nothing; tasks list it in ``limits=[...]`` and every invocation of them must
    hold it (a slot and/or a rate token of its budget) to run.

    Attributes:
        name: The limit's name, which overrides (``app.set_limit``) are stored under.
        concurrency: At most this many invocations using the limit run at once (per key value
            when keyed); None for no slot limit.
        rate: At most ``rate.count`` starts within any window of ``rate.period`` seconds (per
            key value when keyed); None for no rate limit.
        key: Argument names: one budget per value of those arguments; () for one shared budget.
        fair_by: Argument names: waiters of one budget are admitted round robin across the
            values of those arguments; () for first come, first served.
    """

    name: str
    concurrency: int | None = None
    rate: Rate | None = None
    key: tuple[str, ...] = ()
    fair_by: tuple[str, ...] = ()

    def __repr__(self) -> str:
        parts = [repr(self.name)]
        if self.concurrency is not None:
            parts.append(f"concurrency={self.concurrency}")
        if self.rate is not None:
            parts.append(f"rate='{self.rate}'")
        if self.key:
            parts.append(f"key={self.key!r}")
        if self.fair_by:
            parts.append(f"fair_by={self.fair_by!r}")
        return f"Limit({', '.join(parts)})"

    def budget(self, task_id: str, arguments: Mapping[str, Any]) -> Budget:
        """The budget of one call of ``task_id`` with bound ``arguments``.

        Raises:
            SerializationError: a key or fairness argument holds a value with no canonical form.
        """
        if not (self.key or self.fair_by):
            return self._shared_budget
        key = f"limit {self.name}"
        if self.key:
            key += "#" + self._values_text("key", self.key, task_id, arguments)
        fair = None
        if self.fair_by:
            fair = self._values_text("fair_by", self.fair_by, task_id, arguments) or None
        return Budget(key, self.name, self.concurrency, self.rate, fair)

    @functools.cached_property
    def _shared_budget(self) -> Budget:
        """The one budget of every call, for a limit without a key or fairness (made once: this
        runs for every call)."""
        return Budget(f"limit {self.name}", self.name, self.concurrency, self.rate)

    def _values_text(
        self, role: str, names: tuple[str, ...], task_id: str, arguments: Mapping[str, Any]
    ) -> str:
        def unkeyable(name: str, exc: UnkeyableValueError) -> SerializationError:
            return SerializationError(
                f"cannot compute the {role} of limit {self.name!r} for a call of {task_id}: "
                f"{exc.where(name)} holds a value of type {exc.value_type}{exc.reason}, which "
                "has no form that is the same in every process. Pass a plain value (None, bool, "
                "int, float, str, bytes, dates, enums, tuples, dicts... of such values) or "
                f"declare the limit with another {role}"
            )

        return key_values_text(arguments, names, unkeyable)


class LimitRegistry:
    """The limits declared on one app, by name (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limits: dict[str, Limit] = {}

    def declare(
        self,
        name: Any,
        *,
        concurrency: Any = None,
        rate: Any = None,
        key: Any = None,
        fair_by: Any = None,
    ) -> Limit:
        """Declare a limit, or return the one declared under ``name`` with equal values.

        Raises:
            InvalidTaskOptionsError: invalid values, or ``name`` declared with other values.
        """
        limit = build_limit(name, concurrency=concurrency, rate=rate, key=key, fair_by=fair_by)
        with self._lock:
            existing = self._limits.setdefault(limit.name, limit)
        if existing != limit:
            raise InvalidTaskOptionsError(
                f"limit {limit.name!r} is already declared as {existing!r}; declaring it again "
                f"as {limit!r} would give one name two meanings. Use the same values or another "
                "name (to change a limit at run time, use app.set_limit)"
            )
        return existing

    @property
    def declared(self) -> dict[str, Limit]:
        """The declared limits by name (a copy)."""
        with self._lock:
            return dict(self._limits)


def check_name(name: Any) -> str:
    """``name`` if it can name a limit (raises InvalidTaskOptionsError otherwise)."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or "#" in name
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    ):
        raise InvalidTaskOptionsError(
            f"invalid limit name {name!r}: a limit name is a non-empty str without control "
            "characters or '#' (e.g. 'llm-api')"
        )
    return name


def check_concurrency(name: str, value: Any) -> int:
    """``value`` if it is a valid concurrency of limit ``name`` (an int >= 1), else raises."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidTaskOptionsError(
            f"concurrency of limit {name!r} must be an int of at least 1, got {value!r}"
        )
    return value


def _argument_names(name: str, option: str, value: Any) -> tuple[str, ...]:
    items: Any = (value,) if isinstance(value, str) else value
    names: tuple[str, ...] | None
    try:
        names = tuple(items) if items is not None else ()
    except TypeError:
        names = None
    if (
        names is None
        or not all(isinstance(n, str) and n.isidentifier() for n in names)
        or len(set(names)) != len(names)
    ):
        raise InvalidTaskOptionsError(
            f"{option} of limit {name!r} must be an argument name or a tuple of distinct "
            f"argument names, got {value!r}"
        )
    return names


def build_limit(
    name: Any, *, concurrency: Any = None, rate: Any = None, key: Any = None, fair_by: Any = None
) -> Limit:
    """A validated :class:`Limit` (what :meth:`LimitRegistry.declare` stores).

    Raises:
        InvalidTaskOptionsError: see :meth:`App.limit <taskgate.app.App.limit>`.
    """
    name = check_name(name)
    if concurrency is None and rate is None:
        raise InvalidTaskOptionsError(
            f"limit {name!r} limits nothing: pass concurrency=N, rate='M/P' or both"
        )
    return Limit(
        name=name,
        concurrency=None if concurrency is None else check_concurrency(name, concurrency),
        rate=None if rate is None else parse_rate(rate),
        key=_argument_names(name, "key", key),
        fair_by=_argument_names(name, "fair_by", fair_by),
    )


def resolve_limits(
    task_name: str,
    value: Any,
    declared: Mapping[str, Limit],
    func: Callable[..., Any],
) -> tuple[Limit, ...]:
    """The task option ``limits=[...]`` resolved to this app's declared limits, validated.

    Args:
        task_name: The task's name, for messages.
        value: A Limit, a limit name, or an iterable of them.
        declared: The app's declared limits by name.
        func: The task's function (its parameters must include every key and fair_by argument).

    Raises:
        InvalidTaskOptionsError: an unknown name, a Limit not declared on this app, a limit
            listed twice, or a key or fair_by argument that is not a parameter of ``func``.
    """
    items = [value] if isinstance(value, (str, Limit)) else value
    try:
        items = list(items)
    except TypeError:
        items = [value]
    parameters = inspect.signature(func).parameters
    resolved: list[Limit] = []
    for item in items:
        limit = _resolve_one(task_name, item, declared)
        if limit in resolved:
            raise InvalidTaskOptionsError(
                f"task {task_name} lists limit {limit.name!r} twice in limits=; list it once"
            )
        for option in ("key", "fair_by"):
            missing = [arg for arg in getattr(limit, option) if arg not in parameters]
            if missing:
                raise InvalidTaskOptionsError(
                    f"limit {limit.name!r} has {option}={getattr(limit, option)!r} but task "
                    f"{task_name} has no parameter {', '.join(map(repr, missing))}; its "
                    f"parameters are: {', '.join(parameters) or '(none)'}. Rename the "
                    f"parameter or use a limit keyed by arguments the task has"
                )
        resolved.append(limit)
    return tuple(resolved)


def _resolve_one(task_name: str, item: Any, declared: Mapping[str, Limit]) -> Limit:
    if isinstance(item, str):
        limit = declared.get(item)
        if limit is None:
            known = ", ".join(map(repr, sorted(declared))) or "none yet"
            raise InvalidTaskOptionsError(
                f"task {task_name} uses limit {item!r}, which is not declared on this app "
                f"(declared: {known}); declare it with app.limit({item!r}, ...) before the task"
            )
        return limit
    if isinstance(item, Limit):
        if declared.get(item.name) is not item:
            raise InvalidTaskOptionsError(
                f"task {task_name} uses {item!r}, which was not declared on this app; declare "
                f"it with this app's app.limit({item.name!r}, ...) and pass that object or its "
                "name"
            )
        return item
    raise InvalidTaskOptionsError(
        f"limits= of task {task_name} takes Limit objects (from app.limit(...)) or limit names, "
        f"got {item!r}"
    )
