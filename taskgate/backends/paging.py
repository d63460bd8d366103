"""The bounded walk behind :meth:`Backend.page_invocations` on stores that filter by scanning.

A page walks the store's index newest first from the cursor, keeps the entries that pass the
filters, and stops at whichever comes first: ``limit`` matches and one more (so it knows a next
page exists), the end of the index, or :data:`~taskgate.backends.base.PAGE_SCAN_MAX` entries
examined (then the page may be short, ``scanned_all`` is False and the cursor points at the last
entry examined, so the next page goes on from there: no entry is skipped or seen twice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from taskgate.backends import base
from taskgate.errors import InvalidCursorError

T = TypeVar("T")
C = TypeVar("C")


def scan_max() -> int:
    """Index entries one page examines at most (read at each call: tests lower it)."""
    return max(1, base.PAGE_SCAN_MAX)


def walk(
    entries: Iterable[T], matches: Callable[[T], bool], limit: int, bound: int
) -> tuple[list[T], T | None, bool]:
    """Walk ``entries`` (newest first) for one page.

    Returns:
        The matching entries (at most ``limit``), the entry the next page starts after (None:
        no next page) and whether the walk ended for a reason other than the bound.
    """
    found: list[T] = []
    for examined, entry in enumerate(entries, 1):
        if matches(entry):
            if len(found) >= limit:
                return found, found[-1], True  # a next page exists
            found.append(entry)
        if examined >= bound:
            return found, entry, False
    return found, None, True


def prefix_filter(prefix: str | None) -> Callable[[str], bool]:
    """Whether an id starts with ``prefix`` (literal; None or '' match every id)."""
    if not prefix:
        return lambda _: True
    return lambda invocation_id: invocation_id.startswith(prefix)


def read_cursor(cursor: str, parse: Callable[[str], C]) -> C:
    """``parse(cursor)``, or :class:`InvalidCursorError` if it is not a cursor of this store."""
    try:
        return parse(cursor)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidCursorError(
            f"page cursor {cursor[:80]!r} is not one this backend returned; pass the "
            "next_cursor of the previous page, or none to start at the newest"
        ) from exc


def entry_and_id(cursor: str) -> tuple[tuple[int, int], str]:
    """A ``"<micros>-<n> <id>"`` cursor (Redis: a stream entry id and an invocation id) as its
    parts, the entry id as two integers."""
    entry, space, invocation_id = cursor.partition(" ")
    micros, dash, n = entry.partition("-")
    parts = (micros, n)
    if not space or not dash or not all(part.isascii() and part.isdigit() for part in parts):
        raise ValueError("not an index entry and an id")
    position = (int(micros), int(n))
    if max(position) >= 1 << 64:  # Redis would refuse it as an entry id
        raise ValueError("not an index entry")
    return position, invocation_id


def sequence(cursor: str) -> int:
    """A registration-order cursor (memory, SQLite): an integer SQLite can bind (63 bits)."""
    value = int(cursor)
    if not 0 <= value < SEQUENCE_END:
        raise ValueError("out of range")
    return value


SEQUENCE_END = 2**63 - 1
"""Larger than any registration sequence number: the first page's cursor."""
