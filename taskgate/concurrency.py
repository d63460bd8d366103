"""Concurrency-control policy: scope keys and the plan written onto each invocation record.

This is the only place that interprets ``registration_concurrency``, ``running_concurrency`` and
``key_arguments``; backends receive the resulting keys as opaque strings.
"""

from __future__ import annotations

import functools
import operator
import pickle
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from taskgate.canonical import UnkeyableValueError, key_literal
from taskgate.errors import SerializationError
from taskgate.record import Budget, ConcurrencyPlan

if TYPE_CHECKING:
    from taskgate.task import TaskOptions


class ConcurrencyControlType(StrEnum):
    """The scope that concurrency control applies to.

    ``DISABLED``: no control. ``TASK``: every call of the task shares one scope. ``ARGUMENTS``:
    calls with equal bound arguments (defaults applied) share a scope. ``KEYS``: calls with equal
    values of the task's ``key_arguments`` share a scope.
    """

    DISABLED = "disabled"
    TASK = "task"
    ARGUMENTS = "arguments"
    KEYS = "keys"


def key_values_text(
    arguments: Mapping[str, Any],
    names: Iterable[str],
    unkeyable: Callable[[str, UnkeyableValueError], SerializationError],
) -> str:
    """``name=literal,...`` for ``names``: the readable, canonical part of a key after ``#``.

    Raises:
        SerializationError: built by ``unkeyable(name, exc)`` for the first value with no
            canonical form.
    """
    parts = []
    for name in names:
        try:
            parts.append(f"{name}={key_literal(arguments[name])}")
        except UnkeyableValueError as exc:
            raise unkeyable(name, exc) from exc
    return ",".join(parts)


def _key_text(
    task_id: str, control: str, arguments: Mapping[str, Any], names: Iterable[str]
) -> str:
    return f"{task_id}#" + key_values_text(
        arguments, names, lambda name, exc: _unkeyable(task_id, control, name, exc)
    )


def _unkeyable(
    task_id: str, control: str, name: str, exc: UnkeyableValueError
) -> SerializationError:
    return SerializationError(
        f"cannot compute the {control} scope key of a call of {task_id}: {exc.where(name)} "
        f"holds a value of type {exc.value_type}{exc.reason}, which has no form that is the "
        "same in every process. "
        "Key values may be None, bool, int, float, str, bytes, complex, Decimal, Fraction, UUID, "
        "Path, date/time/datetime/timedelta, enum members, dataclasses and NamedTuples of such "
        "values, and tuples, lists, dicts and sets of them. Pass such a value, or use KEYS with "
        "key_arguments naming only such arguments, or TASK concurrency control"
    )


def scope_key(
    control: ConcurrencyControlType,
    task_id: str,
    arguments: Mapping[str, Any],
    key_arguments: tuple[str, ...],
) -> str | None:
    """The scope key of one call under ``control``, or ``None`` when control is disabled.

    Args:
        control: The concurrency-control type of the phase (registration or running).
        task_id: The task's id; every key starts with it, so tasks never share scopes.
        arguments: The bound arguments of the call, defaults applied.
        key_arguments: The argument names that form the key for ``KEYS``.

    Returns:
        ``task_id`` for ``TASK``; for ``ARGUMENTS`` (every argument, in signature order) and
        ``KEYS`` (the key arguments, in their order) ``task_id#name=value,name=value``, each
        value a short literal or a digest (:func:`taskgate.canonical.key_literal`). Equal values
        give equal keys in every process and on every host, different values different keys.

    Raises:
        SerializationError: a value that forms the key has no canonical form; the message names
            the task, the argument and the type, and says what to do.
    """
    control = ConcurrencyControlType(control)
    if control is ConcurrencyControlType.DISABLED:
        return None
    if control is ConcurrencyControlType.TASK:
        return task_id
    if control is ConcurrencyControlType.ARGUMENTS:
        return _key_text(task_id, "ARGUMENTS", arguments, arguments)
    return _key_text(task_id, "KEYS", arguments, key_arguments)


def plan_for_call(
    options: TaskOptions, task_id: str, arguments: Mapping[str, Any]
) -> ConcurrencyPlan:
    """Turn a task's options and one call's arguments into the record's concurrency plan.

    For a task with ``limits``, the plan's ``budgets`` hold one budget per limit plus the task's
    own running scope (if any), sorted by key, and ``running_key`` is None; every other task
    gets the single-running-key plan.

    Raises:
        SerializationError: a value forming a scope key, a limit's key or its fairness value has
            no canonical form.
    """
    if options.limits:
        return _plan_with_budgets(options, task_id, arguments)
    if (
        options.registration_concurrency is ConcurrencyControlType.DISABLED
        and options.running_concurrency is ConcurrencyControlType.DISABLED
    ):
        return _uncontrolled_plan(options.running_limit, not options.reroute_on_concurrency_control)
    registration_key = scope_key(
        options.registration_concurrency, task_id, arguments, options.key_arguments
    )
    if options.running_concurrency is options.registration_concurrency:
        running_key = registration_key  # one scope for both phases: compute it once
    else:
        running_key = scope_key(
            options.running_concurrency, task_id, arguments, options.key_arguments
        )
    return ConcurrencyPlan(
        registration_key=registration_key,
        running_key=running_key,
        running_limit=options.running_limit,
        drop_when_blocked=not options.reroute_on_concurrency_control,
    )


_BY_KEY = operator.attrgetter("key")


def _plan_with_budgets(
    options: TaskOptions, task_id: str, arguments: Mapping[str, Any]
) -> ConcurrencyPlan:
    registration_key = scope_key(
        options.registration_concurrency, task_id, arguments, options.key_arguments
    )
    if options.running_concurrency is options.registration_concurrency:
        running_key = registration_key
    else:
        running_key = scope_key(
            options.running_concurrency, task_id, arguments, options.key_arguments
        )
    budgets = [limit.budget(task_id, arguments) for limit in options.limits]
    if running_key is not None:
        # Task ids hold no space, so the task's own scope never collides with "limit <name>".
        budgets.append(Budget(running_key, None, options.running_limit))
    budgets.sort(key=_BY_KEY)
    return ConcurrencyPlan(
        registration_key=registration_key,
        running_key=None,
        running_limit=options.running_limit,
        drop_when_blocked=not options.reroute_on_concurrency_control,
        budgets=tuple(budgets),
    )


@functools.cache
def _uncontrolled_plan(running_limit: int, drop_when_blocked: bool) -> ConcurrencyPlan:
    """The plan of every call of a task without concurrency control (one shared instance)."""
    return ConcurrencyPlan(None, None, running_limit, drop_when_blocked)


def describe_argument_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """A readable text naming each changed argument with its old and new value."""
    changes = []
    for name in dict.fromkeys([*old, *new]):
        old_value = old.get(name, "<missing>")
        new_value = new.get(name, "<missing>")
        if not _equal(old_value, new_value):
            changes.append(f"{name}: {old_value!r} -> {new_value!r}")
    return "; ".join(changes)


def _equal(left: Any, right: Any) -> bool:
    try:
        return bool(left == right)
    except Exception:  # values whose __eq__ raises (arrays, ...) are compared by their pickle
        try:
            return pickle.dumps(left) == pickle.dumps(right)
        except Exception:
            return False
