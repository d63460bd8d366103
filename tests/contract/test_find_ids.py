"""``Backend.find_ids``: the ids of an app's invocations that start with a prefix, per backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from taskgate import App
from taskgate.backends.base import Backend
from taskgate.record import InvocationRecord

NewRecord = Callable[..., InvocationRecord]

IDS = ["abc-2", "abc-1", "abd-1", "b", "x*y", "x%y", "x_y", "x?y", "x[y]", "x\\y", "éa-1"]


@pytest.fixture
def stored(backend: Backend, new_record: NewRecord) -> Backend:
    """The backend holding one invocation per id of ``IDS``."""
    for invocation_id in IDS:
        backend.register(dataclasses.replace(new_record(), invocation_id=invocation_id))
    return backend


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("ab", ["abc-1", "abc-2", "abd-1"]),
        ("abc", ["abc-1", "abc-2"]),
        ("abc-1", ["abc-1"]),
        ("b", ["b"]),
        ("é", ["éa-1"]),
        ("zzz", []),
        ("abc-10", []),
        ("ABC", []),  # ids are compared exactly, case included
    ],
)
def test_find_ids_returns_matching_ids_sorted(
    stored: Backend, prefix: str, expected: list[str]
) -> None:
    assert stored.find_ids(prefix, 10) == expected


@pytest.mark.parametrize("wildcard_id", ["x*y", "x%y", "x_y", "x?y", "x[y]", "x\\y"])
def test_store_wildcards_in_a_prefix_match_only_themselves(
    stored: Backend, wildcard_id: str
) -> None:
    assert stored.find_ids(wildcard_id[:2], 10) == [wildcard_id]


def test_find_ids_returns_at_most_limit_ids(stored: Backend) -> None:
    assert stored.find_ids("ab", 2) == ["abc-1", "abc-2"]
    assert len(stored.find_ids("", 100)) == len(IDS)


def test_find_ids_never_sees_another_apps_invocations(
    stored: Backend, make_app: Callable[..., App], new_record: NewRecord
) -> None:
    other = make_app().backend
    other.register(dataclasses.replace(new_record(), invocation_id="abc-3"))
    assert stored.find_ids("abc", 10) == ["abc-1", "abc-2"]
    assert other.find_ids("abc", 10) == ["abc-3"]


def test_find_ids_forgets_purged_invocations(stored: Backend) -> None:
    stored.purge()
    assert stored.find_ids("", 10) == []
