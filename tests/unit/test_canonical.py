"""Canonical forms and key literals of argument values (taskgate.canonical), type by type."""

from __future__ import annotations

import dataclasses
import enum
import os
import subprocess
import sys
from collections import Counter, OrderedDict, defaultdict
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple
from uuid import UUID

import pytest

from taskgate.canonical import LITERAL_MAX_CHARS, UnkeyableValueError, canonical_text, key_literal


class Color(enum.Enum):
    RED = 1
    CRIMSON = 1  # an alias: the same member as RED
    GREEN = 2


class Level(enum.IntEnum):
    LOW = 1


class Region(enum.StrEnum):
    EU = "eu"


@dataclasses.dataclass(frozen=True)
class Tags:
    name: str
    tags: frozenset[str]
    note: str = dataclasses.field(default="", compare=False)


@dataclasses.dataclass(frozen=True)
class OtherTags:
    name: str
    tags: frozenset[str]


class Pair(NamedTuple):
    left: int
    right: int


class OtherPair(NamedTuple):
    left: int
    right: int


class Point:
    """An arbitrary object: no canonical form."""

    def __init__(self, x: int) -> None:
        self.x = x


def same(left: Any, right: Any) -> bool:
    """Whether the two values get one canonical form and one key literal."""
    text_equal = canonical_text(left) == canonical_text(right)
    assert text_equal == (key_literal(left) == key_literal(right))
    return text_equal


# --- equal values, one form ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"b": 1, "a": 2}, {"a": 2, "b": 1}),
        ({3, 1, 2}, {2, 3, 1}),
        (frozenset({"x", "y"}), frozenset({"y", "x"})),
        ({(1, "a"), (2, "b")}, {(2, "b"), (1, "a")}),
        (Tags("t", frozenset({"a", "b"})), Tags("t", frozenset({"b", "a"}))),
        (Tags("t", frozenset()), Tags("t", frozenset(), note="ignored by ==")),
        (Pair(1, 2), Pair(left=1, right=2)),
        (Color.RED, Color.CRIMSON),
        (Color(1), Color.RED),
        (-0.0, 0.0),
        (complex(-0.0, 1), complex(0.0, 1)),
        (Decimal("1.0"), Decimal("1")),
        (Decimal("100"), Decimal("1E+2")),
        (Decimal("-0.00"), Decimal("0")),
        (Fraction(2, 4), Fraction(1, 2)),
        (timedelta(days=1), timedelta(hours=24)),
        (
            datetime(2024, 1, 1, 12, tzinfo=UTC),
            datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2))),
        ),
        (datetime(2024, 1, 1, 1, fold=1), datetime(2024, 1, 1, 1, fold=0)),
        (time(12, tzinfo=UTC), time(13, tzinfo=timezone(timedelta(hours=1)))),
        (UUID("12345678-1234-5678-1234-567812345678"), UUID("{12345678123456781234567812345678}")),
        (Path("/a/b"), PurePosixPath("/a/b")),
        (PureWindowsPath("C:/Dir"), PureWindowsPath("c:\\dir")),
        (OrderedDict(a=1, b=2), OrderedDict(a=1, b=2)),
        (Counter("abca"), Counter("aabc")),
        ("é€😀", "é€😀"),
    ],
)
def test_equal_values_have_one_form(left: Any, right: Any) -> None:
    assert left == right  # the premise: Python says they are equal
    assert same(left, right)


# --- different values (or types), different forms ------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (1, 1.0),
        (1, True),
        (0, None),
        (1, "1"),
        ("None", None),
        ((1, 2), [1, 2]),
        ({1: "a"}, {"1": "a"}),
        ({1, 2}, frozenset({1, 2})),
        ([1, 2], [2, 1]),
        (b"ab", bytearray(b"ab")),
        (b"ab", "ab"),
        (Tags("t", frozenset({"a"})), Tags("t", frozenset({"b"}))),
        (Tags("t", frozenset({"a"})), OtherTags("t", frozenset({"a"}))),
        (Pair(1, 2), OtherPair(1, 2)),
        (Pair(1, 2), (1, 2)),
        (Color.RED, Color.GREEN),
        (Level.LOW, 1),
        (Region.EU, "eu"),
        (Decimal("1.1"), Decimal("1.10000000000000000000000000001")),
        (Decimal(1), 1),
        (Fraction(1, 2), 0.5),
        (date(2024, 1, 1), datetime(2024, 1, 1)),
        (datetime(2024, 1, 1, 12), datetime(2024, 1, 1, 12, tzinfo=UTC)),
        (datetime(2024, 1, 1, 12, tzinfo=UTC), datetime(2024, 1, 1, 13, tzinfo=UTC)),
        (time(12), time(12, tzinfo=UTC)),
        (timedelta(microseconds=1), timedelta(0)),
        (UUID(int=1), UUID(int=2)),
        (Path("/a"), Path("/A")),
        (PurePosixPath("a"), PureWindowsPath("a")),
        (OrderedDict(a=1, b=2), OrderedDict(b=2, a=1)),
        (OrderedDict(a=1), {"a": 1}),
        (defaultdict(int, a=1), {"a": 1}),
        (complex(1, 2), complex(2, 1)),
        ("x" * 100, "x" * 99 + "y"),
        (10**50, 10**50 + 1),
    ],
)
def test_different_values_or_types_have_different_forms(left: Any, right: Any) -> None:
    assert not same(left, right)


def test_nan_has_one_form() -> None:
    assert same(float("nan"), float("nan"))
    assert same(Decimal("NaN"), Decimal("NaN"))


# --- key literals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (None, "None"),
        (True, "True"),
        (42, "42"),
        (-7, "-7"),
        (1.5, "1.5"),
        (-0.0, "0.0"),
        (float("inf"), "inf"),
        ("acme", "'acme'"),
        ("it's", '"it\'s"'),
        ("a,b=c", "'a,b=c'"),
        ("Zürich", "'Z\\xfcrich'"),
        (Color.RED, f"{__name__}:Color.RED"),
        (Region.EU, f"{__name__}:Region.EU"),
    ],
)
def test_plain_values_are_shown_as_literals(value: Any, literal: str) -> None:
    assert key_literal(value) == literal


@pytest.mark.parametrize(
    "value",
    ["x" * (LITERAL_MAX_CHARS + 1), 10**60, (1, 2), [1], {"a": 1}, Tags("t", frozenset()), b"a"],
)
def test_long_and_composite_values_are_shown_as_a_digest(value: Any) -> None:
    literal = key_literal(value)
    assert literal.startswith("<h:")
    assert literal.endswith(">")
    assert len(literal) == len("<h:>") + 24


def test_a_literal_of_the_maximum_length_stays_a_literal() -> None:
    value = "x" * (LITERAL_MAX_CHARS - 2)  # plus two quotes
    assert key_literal(value) == repr(value)


# --- values without a canonical form -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        (Point(1), "", f"{__name__}.Point"),
        (lambda: 1, "", "function"),
        (object(), "", "object"),
        ([1, Point(1)], "[1]", f"{__name__}.Point"),
        ({"k": {Point(1)}}, "['k']{element}", f"{__name__}.Point"),
        ({Pair(1, 2): [object()]}, "[Pair(left=1, right=2)][0]", "object"),
        (Tags("t", frozenset({Point(1)})), ".tags{element}", f"{__name__}.Point"),
    ],
)
def test_values_without_a_canonical_form_are_refused_with_their_place(
    value: Any, path: str, type_name: str
) -> None:
    with pytest.raises(UnkeyableValueError) as caught:
        key_literal(value)
    assert caught.value.path == path
    assert caught.value.value_type == type_name


def test_a_value_that_contains_itself_is_refused() -> None:
    value: list[Any] = []
    value.append(value)
    with pytest.raises(UnkeyableValueError, match="contains itself"):
        canonical_text(value)


# --- the same in every process -------------------------------------------------------------------

APPS = Path(__file__).resolve().parents[1] / "apps"
PRINT_FORMS = (
    "import keyed_app; from taskgate.canonical import canonical_text, key_literal;"
    "value = keyed_app.composite_value(); print(key_literal(value), canonical_text(value))"
)


def test_forms_are_the_same_in_processes_with_different_hash_seeds() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path])}
    forms = {
        subprocess.run(
            [sys.executable, "-c", PRINT_FORMS],
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3", "4")
    }
    assert len(forms) == 1
    key, text = forms.pop().split(" ", 1)
    assert key.startswith("<h:")
    assert '"alpha"' in text  # the form holds the values themselves
