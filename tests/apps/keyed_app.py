"""An app whose calls carry values that pickle differently under different hash seeds.

Test subprocesses import it by module path with ``PYTHONHASHSEED`` set to different values;
the backend URL and app id come from ``TASKGATE_TEST_BACKEND`` and ``TASKGATE_TEST_APP_ID``.
``keyed_app.call_once()`` registers one call and prints its invocation id and scope key.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from typing import Any

from taskgate import App, ConcurrencyControlType
from taskgate.concurrency import scope_key

app = App(
    os.environ.get("TASKGATE_TEST_APP_ID", "keyed-app"),
    backend=os.environ.get("TASKGATE_TEST_BACKEND", "memory://"),
)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass(frozen=True)
class Document:
    name: str
    tags: frozenset[str]


def composite_value() -> dict[str, Any]:
    """Sets of strings (alone, in a dataclass, of tuples) pickle in hash-seed order."""
    return {
        "doc": Document("report", frozenset({"alpha", "beta", "gamma", "delta", "epsilon"})),
        "sizes": {name: len(name) for name in ("zeta", "eta", "theta", "iota")},
        "pairs": {("a", "x"), ("b", "y"), ("c", "z"), ("d", "w")},
        "color": Color.GREEN,
    }


@app.task(registration_concurrency=ConcurrencyControlType.ARGUMENTS)
def deduplicated(value: dict[str, Any], doc: Document, color: Color) -> str:
    return doc.name


def call_once() -> None:
    """Register one call (folded into a waiting one if its key matches); print id and key."""
    value = composite_value()
    arguments = {"value": value, "doc": value["doc"], "color": value["color"]}
    invocation = deduplicated(**arguments)
    key = scope_key(ConcurrencyControlType.ARGUMENTS, deduplicated.task_id, arguments, ())
    print(invocation.invocation_id, key, flush=True)
