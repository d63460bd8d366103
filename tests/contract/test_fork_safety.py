"""A backend used before ``fork`` works in the parent and in every child at once (issue 11, 3).

A forked child inherits the parent's open connections (the forking thread's own, on Redis):
were it to use them, the parent's and the child's replies would cross. Each backend must notice
the new process and connect afresh, leaving the parent's connections alone.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskgate import App
from taskgate.backends.base import Backend
from taskgate.record import ConcurrencyPlan, InvocationRecord
from taskgate.status import InvocationStatus

ROUNDS = 300
CHILDREN = 2  # of each kind: os.fork() and multiprocessing's "fork" context
WAIT = 60.0


@pytest.fixture
def backend(shared_backend_url: str) -> Iterator[Backend]:
    app = App(f"fork-{uuid.uuid4().hex[:12]}", backend=shared_backend_url)
    yield app.backend
    app.purge()
    app.backend.close()


def register_and_read(backend: Backend, name: str) -> None:
    """Register ``ROUNDS`` invocations of this process's own and read each one back at once."""
    for number in range(ROUNDS):
        invocation_id = f"{name}-{number}"
        record = InvocationRecord(
            invocation_id=invocation_id,
            task_id="tests.fork",
            arguments=invocation_id.encode(),
            plan=ConcurrencyPlan(None, None, 1, False),
        )
        assert backend.register(record).invocation_id == invocation_id
        stored = backend.get(invocation_id)
        assert stored is not None, f"{invocation_id} not found"
        assert (stored.invocation_id, stored.arguments, stored.status) == (
            invocation_id,
            invocation_id.encode(),
            InvocationStatus.REGISTERED,
        )


def forked(work: Callable[[], None], report: Path) -> int:
    """Run ``work`` in an ``os.fork()`` child; returns its pid. A failure goes to ``report``."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            work()
        except BaseException:  # whatever went wrong, the parent must learn it
            report.write_text(traceback.format_exc())
            code = 1
        finally:
            os._exit(code)
    return pid


def test_forked_children_and_their_parent_use_the_backend_at_once(
    backend: Backend, tmp_path: Path
) -> None:
    register_and_read(backend, "before")  # the forking thread has a connection of its own
    reports = [tmp_path / f"child-{n}.txt" for n in range(CHILDREN)]
    pids = [
        forked(functools.partial(register_and_read, backend, f"os-fork-{n}"), report)
        for n, report in enumerate(reports)
    ]
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=register_and_read, args=(backend, f"mp-fork-{n}"))
        for n in range(CHILDREN)
    ]
    for process in processes:
        process.start()
    register_and_read(backend, "parent")  # concurrently with the children
    statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    for process in processes:
        process.join(WAIT)
    failures = [report.read_text() for report in reports if report.exists()]
    assert failures == []
    assert statuses == [0] * CHILDREN
    assert [process.exitcode for process in processes] == [0] * CHILDREN
    register_and_read(backend, "after")  # the children's exits left the parent's connection be
    names = ["before", "parent", "after"]
    names += [f"os-fork-{n}" for n in range(CHILDREN)] + [f"mp-fork-{n}" for n in range(CHILDREN)]
    ids = [f"{name}-{number}" for name in names for number in range(ROUNDS)]
    assert all(record is not None for record in backend.get_many(ids))
