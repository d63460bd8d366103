"""Periodic ticks in the backend contract (``Backend.register_tick``, "Periodic ticks" in
backends/base.py), driven directly with hand-built records, on every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from taskgate.backends.base import Backend
from taskgate.record import InvocationRecord, RegisterResult
from taskgate.status import InvocationStatus as S

TASK = "tests.periodic"
THREADS = 8
TICKS = 20
WAIT = 10.0
NewRecord = Callable[..., InvocationRecord]


def _base() -> float:
    """A whole second well in the future: exact as a float in every store."""
    return float(int(time.time()) + 3600)


def tick_record(new_record: NewRecord, tick: float, **fields: object) -> InvocationRecord:
    return new_record(task_id=TASK, scheduled_for=tick, **fields)


def test_each_tick_is_registered_once_across_threads(
    backend: Backend, new_record: NewRecord
) -> None:
    base = _base()
    ticks = [base + 60 * k for k in range(TICKS)]
    start = threading.Barrier(THREADS)
    won: list[list[RegisterResult]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []

    def runner(index: int) -> None:
        try:
            start.wait(WAIT)
            for tick in ticks:
                result = backend.register_tick(tick_record(new_record, tick), tick)
                if result is not None:
                    won[index].append(result)
        except BaseException as error:  # reported in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=runner, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert not errors, errors
    results = [result for results in won for result in results]
    assert len(results) == TICKS
    assert all(result.created for result in results)
    stored = [backend.get(result.invocation_id) for result in results]
    scheduled = [r for r in stored if r is not None and r.status is S.SCHEDULED]
    assert len(scheduled) == TICKS
    assert sorted(r.scheduled_for or 0.0 for r in scheduled) == ticks
    assert backend.stats().periodic_ticks == {TASK: ticks[-1]}
    counts = backend.stats().by_task_and_status
    assert counts[(TASK, S.SCHEDULED)] == TICKS


def test_an_older_or_equal_tick_is_refused(backend: Backend, new_record: NewRecord) -> None:
    base = _base()
    later = backend.register_tick(tick_record(new_record, base + 60), base + 60)
    assert later is not None and later.created
    assert backend.register_tick(tick_record(new_record, base), base) is None
    assert backend.register_tick(tick_record(new_record, base + 60), base + 60) is None
    assert backend.stats().periodic_ticks == {TASK: base + 60}
    assert backend.stats().by_task_and_status[(TASK, S.SCHEDULED)] == 1


def test_ticks_of_different_tasks_are_independent(backend: Backend, new_record: NewRecord) -> None:
    base = _base()
    assert backend.register_tick(tick_record(new_record, base), base) is not None
    other = new_record(task_id="tests.other", scheduled_for=base - 60)
    assert backend.register_tick(other, base - 60) is not None
    assert backend.stats().periodic_ticks == {TASK: base, "tests.other": base - 60}


def test_a_due_tick_is_ready_at_once(backend: Backend, new_record: NewRecord) -> None:
    tick = float(int(time.time()) - 1)
    result = backend.register_tick(tick_record(new_record, tick), tick)
    assert result is not None
    assert [c.invocation_id for c in backend.claim("runner-t", 5, 30.0, 0)] == [
        result.invocation_id
    ]


def test_registration_control_applies_to_a_tick(backend: Backend, new_record: NewRecord) -> None:
    base = _base()
    first = backend.register_tick(tick_record(new_record, base, reg="periodic"), base)
    assert first is not None and first.created
    folded = backend.register_tick(tick_record(new_record, base + 60, reg="periodic"), base + 60)
    # Folded into the waiting tick, which keeps its own time; the tick is taken all the same.
    assert folded is not None and not folded.created
    assert folded.invocation_id == first.invocation_id
    assert backend.stats().periodic_ticks == {TASK: base + 60}


def test_purge_forgets_ticks(backend: Backend, new_record: NewRecord) -> None:
    base = _base()
    assert backend.register_tick(tick_record(new_record, base), base) is not None
    backend.purge()
    assert backend.stats().periodic_ticks == {}
    assert backend.register_tick(tick_record(new_record, base), base) is not None
