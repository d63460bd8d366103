"""Concurrency-control policy: scope keys and the plan written onto each invocation record.

This is the only place that interprets ``registration_concurrency``, ``running_concurrency`` and
``key_arguments``; backends receive the resulting keys as opaque strings.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from taskgate.record import ConcurrencyPlan

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


def canonical_bytes(value: Any) -> bytes:
    """A byte form of ``value`` that is equal for equal values, in every process, for key hashing.

    Containers are encoded recursively with their type name, so ``(1, 2)`` and ``[1, 2]``, or
    ``{1: "a"}`` and ``{"1": "a"}``, differ; dict items and set elements are sorted by their own
    canonical form, so insertion order and string hash seeds do not matter. Other objects are
    compared by their pickle.
    """
    return json.dumps(_canonical(value), separators=(",", ":")).encode()


_SCALARS = (type(None), bool, int, float, str)


def _canonical(value: Any) -> Any:
    kind = type(value).__name__
    if isinstance(value, _SCALARS):
        return [kind, value if not isinstance(value, float) else repr(value)]
    if isinstance(value, (list, tuple)):
        return [kind, [_canonical(item) for item in value]]
    if isinstance(value, dict):
        items = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return [kind, sorted(items, key=json.dumps)]
    if isinstance(value, (set, frozenset)):
        return [kind, sorted((_canonical(item) for item in value), key=json.dumps)]
    if isinstance(value, bytes):
        return [kind, value.hex()]
    return ["pickle", pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL).hex()]


def _digest(arguments: Mapping[str, Any], names: tuple[str, ...]) -> str:
    hasher = hashlib.blake2b(digest_size=12)
    for name in names:
        hasher.update(name.encode())
        hasher.update(b"\x00")
        hasher.update(canonical_bytes(arguments[name]))
        hasher.update(b"\x01")
    return hasher.hexdigest()


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
    """
    control = ConcurrencyControlType(control)
    if control is ConcurrencyControlType.DISABLED:
        return None
    if control is ConcurrencyControlType.TASK:
        return task_id
    if control is ConcurrencyControlType.ARGUMENTS:
        return f"{task_id}#args:{_digest(arguments, tuple(arguments))}"
    names = ",".join(key_arguments)
    return f"{task_id}#keys({names}):{_digest(arguments, key_arguments)}"


def plan_for_call(
    options: TaskOptions, task_id: str, arguments: Mapping[str, Any]
) -> ConcurrencyPlan:
    """Turn a task's options and one call's arguments into the record's concurrency plan."""
    if (
        options.registration_concurrency is ConcurrencyControlType.DISABLED
        and options.running_concurrency is ConcurrencyControlType.DISABLED
    ):
        return _uncontrolled_plan(options.running_limit, not options.reroute_on_concurrency_control)
    registration_key = scope_key(
        options.registration_concurrency, task_id, arguments, options.key_arguments
    )
    running_key = scope_key(options.running_concurrency, task_id, arguments, options.key_arguments)
    return ConcurrencyPlan(
        registration_key=registration_key,
        running_key=running_key,
        running_limit=options.running_limit,
        drop_when_blocked=not options.reroute_on_concurrency_control,
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
    except Exception:  # values whose __eq__ raises (arrays, ...) are compared by serialized form
        return canonical_bytes(left) == canonical_bytes(right)
