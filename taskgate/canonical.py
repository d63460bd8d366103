"""Canonical forms of argument values, for scope keys that agree across processes and hosts.

A scope key must be equal for equal values in every process and on every host, whatever
``PYTHONHASHSEED``, dict insertion order or object identity. So values are never keyed by their
pickle (a set pickles in hash order) or by ``repr`` (most objects show their address): only
types with a well-defined value are accepted, encoded recursively into a JSON text where dict
items and set elements are sorted by their own encoding.

Keys are equal when values are of the same type and equal (``==``): ``1``, ``1.0`` and ``True``
stay distinct, as do ``(1, 2)`` and ``[1, 2]``; ``-0.0`` and ``0.0``, ``Decimal("1.0")`` and
``Decimal("1")``, and two aware datetimes naming the same instant are equal, as Python says.
Anything else (arbitrary objects, functions, numpy arrays) raises :class:`UnkeyableValueError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from pathlib import PurePath, PureWindowsPath
from typing import Any
from uuid import UUID

LITERAL_MAX_CHARS = 40
"""A value whose literal is longer than this is shown in a key by its digest."""

_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1, 1, 1)


class UnkeyableValueError(ValueError):
    """A value has no canonical form.

    Attributes:
        value_type: The offending type's name.
        path: Where the value sits inside the argument (``""`` for the argument itself,
            ``.field[2]{element}`` for an element of a set in the third item of a field).
    """

    def __init__(self, value: Any, reason: str = "") -> None:
        self.value_type = type_name(type(value))
        self.reason = reason
        self.path = ""
        super().__init__(self.value_type)

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.value_type}{where}{self.reason}"

    def where(self, argument: str) -> str:
        """Where the value sits, for a message: ``argument 'x'`` or ``argument 'x' (at x[2])``."""
        return f"argument {argument!r}" + (f" (at {argument}{self.path})" if self.path else "")


def type_name(cls: type) -> str:
    """``module.QualName``, or just the name for builtins."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def canonical_text(value: Any) -> str:
    """A JSON text equal for equal values (see the module docstring), in every process.

    Raises:
        UnkeyableValueError: ``value`` (or something inside it) has no canonical form.
    """
    try:
        return _encode(value)
    except RecursionError:
        raise UnkeyableValueError(value, " (nested too deeply, or it contains itself)") from None


def key_literal(value: Any) -> str:
    """The text of ``value`` in a scope key: a literal for plain scalars, else a digest.

    ``None``, bools, ints, floats and strings (ASCII-escaped) appear as Python literals, enum
    members as ``module:Type.NAME``; other values, and literals longer than
    :data:`LITERAL_MAX_CHARS`, as ``<h:...>``: 24 hex digits of a digest of
    :func:`canonical_text`. Every form is self-delimiting and tells types apart, so distinct
    values get distinct texts.

    Raises:
        UnkeyableValueError: ``value`` has no canonical form.
    """
    cls = type(value)
    literal: str | None = None
    if value is None or cls is bool or cls is int:
        literal = repr(value)
    elif cls is str:
        literal = ascii(value)  # like repr, but independent of the host's Unicode tables
    elif cls is float:
        literal = repr(value + 0.0)  # -0.0 + 0.0 is 0.0: equal values, one key
    elif isinstance(value, Enum) and value.name is not None:
        literal = f"{cls.__module__}:{cls.__qualname__}.{value.name}"
    if literal is not None and len(literal) <= LITERAL_MAX_CHARS:
        return literal
    digest = hashlib.blake2b(canonical_text(value).encode(), digest_size=12).hexdigest()
    return f"<h:{digest}>"


def _encode(value: Any) -> str:
    cls = type(value)
    encoder = _EXACT.get(cls)
    if encoder is not None:
        return encoder(value)
    if isinstance(value, Enum):
        member = json.dumps(value.name) if value.name is not None else _encode(value.value)
        return _tagged("enum", _type_tag(cls), member)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = []
        for field in dataclasses.fields(value):
            if field.compare:  # the fields == looks at
                try:
                    encoded = _encode(getattr(value, field.name))
                except UnkeyableValueError as exc:
                    raise _located(exc, f".{field.name}") from None
                fields.append(f"[{json.dumps(field.name)},{encoded}]")
        return _tagged("dataclass", _type_tag(cls), _array(",".join(fields)))
    if isinstance(value, tuple) and hasattr(cls, "_fields"):
        return _tagged("namedtuple", _type_tag(cls), _sequence(value))
    if isinstance(value, PurePath):
        # Pure and concrete paths of one flavour compare equal; Windows paths ignore case.
        if isinstance(value, PureWindowsPath):
            return _tagged("path-windows", json.dumps(str(value).lower()))
        return _tagged("path-posix", json.dumps(str(value)))
    for base in cls.__mro__[1:]:
        base_encoder = _EXACT.get(base)
        if base_encoder is not None:  # a subclass of a supported type: keyed as its base
            return _tagged("subclass", _type_tag(cls), base_encoder(value))
    raise UnkeyableValueError(value)


def _located(exc: UnkeyableValueError, where: str) -> UnkeyableValueError:
    """Prefix ``where`` to the error's path as it propagates out of a container."""
    exc.path = where + exc.path
    return exc


def _type_tag(cls: type) -> str:
    # module and qualname apart: "a.b" + "C" and "a" + "b.C" are different classes.
    return f"{cls.__module__}:{cls.__qualname__}"


def _tagged(*parts: str) -> str:
    """A JSON array of names, then one already-encoded payload."""
    *names, payload = parts
    return f"[{','.join(json.dumps(n) for n in names)},{payload}]"


def _array(encoded_items: str) -> str:
    return f"[{encoded_items}]"


def _scalar(value: Any) -> str:
    return json.dumps(value)  # ensure_ascii escapes strings: the same text on every host


def _float(value: float) -> str:
    return json.dumps(value + 0.0)  # always shows '.', 'e', NaN or Infinity: never an int


def _sequence(value: Iterable[Any]) -> str:
    encoded = []
    for index, item in enumerate(value):
        try:
            encoded.append(_encode(item))
        except UnkeyableValueError as exc:
            raise _located(exc, f"[{index}]") from None
    return _array(",".join(encoded))


def _list(value: list[Any]) -> str:
    return _tagged("list", _sequence(value))


def _tuple(value: tuple[Any, ...]) -> str:
    return _tagged("tuple", _sequence(value))


def _items(value: dict[Any, Any]) -> list[str]:
    encoded = []
    for key, item in value.items():
        try:
            encoded_key = _encode(key)
        except UnkeyableValueError as exc:
            raise _located(exc, f"[key {key!r:.30}]") from None
        try:
            encoded.append(f"[{encoded_key},{_encode(item)}]")
        except UnkeyableValueError as exc:
            raise _located(exc, f"[{key!r:.30}]") from None
    return encoded


def _dict(value: dict[Any, Any]) -> str:
    return _tagged("dict", _array(",".join(sorted(_items(value)))))


def _ordered_dict(value: OrderedDict[Any, Any]) -> str:
    # OrderedDicts compare equal only in the same order, so the order is part of the value.
    return _tagged("OrderedDict", _array(",".join(_items(value))))


def _set(value: set[Any] | frozenset[Any]) -> str:
    try:
        items = sorted(_encode(item) for item in value)
    except UnkeyableValueError as exc:
        raise _located(exc, "{element}") from None
    return _tagged(type(value).__name__, _array(",".join(items)))


def _bytes(value: bytes | bytearray) -> str:
    return _tagged(type(value).__name__, json.dumps(value.hex()))


def _complex(value: complex) -> str:
    return _tagged("complex", _array(f"{_float(value.real)},{_float(value.imag)}"))


def _fraction(value: Fraction) -> str:
    return _tagged("Fraction", _array(f"{value.numerator},{value.denominator}"))


def _decimal(value: Decimal) -> str:
    # Decimal("1.0") == Decimal("1"): strip trailing zeros by hand (Decimal.normalize rounds
    # to the context precision, which would merge distinct values).
    if not value.is_finite():
        return _tagged("Decimal", json.dumps(str(value).lstrip("+")))
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    text = "".join(map(str, digits)).lstrip("0")
    stripped = text.rstrip("0")
    if not stripped:
        return _tagged("Decimal", json.dumps("0"))  # Decimal("-0.00") == Decimal("0")
    exponent += len(text) - len(stripped)
    return _tagged("Decimal", json.dumps(f"{'-' if sign else ''}{stripped}E{exponent}"))


def _uuid(value: UUID) -> str:
    return _tagged("UUID", json.dumps(value.hex))


def _date(value: date) -> str:
    return _tagged("date", json.dumps(value.isoformat()))


def _datetime(value: datetime) -> str:
    offset = value.utcoffset()
    local_us = (value.replace(tzinfo=None, fold=0) - _EPOCH) // _MICROSECOND
    if offset is None:
        return _tagged("datetime", str(local_us))
    # Aware datetimes are equal when they name the same instant, whatever their zones.
    return _tagged("datetime-utc", str(local_us - offset // _MICROSECOND))


def _time(value: time) -> str:
    offset = value.utcoffset()
    clock_us = ((value.hour * 60 + value.minute) * 60 + value.second) * 10**6 + value.microsecond
    if offset is None:
        return _tagged("time", str(clock_us))
    return _tagged("time-utc", str(clock_us - offset // _MICROSECOND))


def _timedelta(value: timedelta) -> str:
    return _tagged("timedelta", str(value // _MICROSECOND))


_EXACT: dict[type, Callable[[Any], str]] = {
    type(None): _scalar,
    bool: _scalar,
    int: _scalar,
    str: _scalar,
    float: _float,
    list: _list,
    tuple: _tuple,
    dict: _dict,
    OrderedDict: _ordered_dict,
    set: _set,
    frozenset: _set,
    bytes: _bytes,
    bytearray: _bytes,
    complex: _complex,
    Fraction: _fraction,
    Decimal: _decimal,
    UUID: _uuid,
    date: _date,
    datetime: _datetime,
    time: _time,
    timedelta: _timedelta,
}
