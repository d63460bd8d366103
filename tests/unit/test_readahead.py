"""Reading results ahead (taskgate.readahead): batches grow while results wait, switch off at
the frontier, probe again now and then, and never hold a dropped handle."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any, cast

from taskgate.backends.base import Backend
from taskgate.invocation import Invocation
from taskgate.readahead import MIN_BATCH, PROBE_EVERY, SWEEP_AT_LEAST, ResultReadAhead
from taskgate.record import FinalOutcome


class FakeBackend:
    """final_outcomes() over a set of ids that are final; counts the reads."""

    def __init__(self) -> None:
        self.final: set[str] = set()
        self.reads: list[list[str]] = []

    def final_outcomes(self, ids: Sequence[str]) -> dict[str, FinalOutcome]:
        self.reads.append(list(ids))
        return {i: cast(FinalOutcome, f"record-{i}") for i in ids if i in self.final}


def handles(read_ahead: ResultReadAhead, count: int, start: int = 0) -> list[Invocation[Any]]:
    made = [Invocation(cast(Any, None), "task", f"id-{n}") for n in range(start, start + count)]
    for handle in made:
        read_ahead.track(handle)
    return made


def read(read_ahead: ResultReadAhead, handle: Invocation[Any], fake: FakeBackend) -> Any:
    return read_ahead.read(handle, cast(Backend, fake))


def test_a_final_result_brings_the_next_ones_along_and_the_batch_grows() -> None:
    read_ahead, fake = ResultReadAhead(), FakeBackend()
    calls = handles(read_ahead, 100)
    fake.final = {h.invocation_id for h in calls}
    assert read(read_ahead, calls[0], fake) == "record-id-0"
    assert fake.reads[0] == [f"id-{n}" for n in range(MIN_BATCH + 1)]
    # The handles read ahead hold their outcome and are no longer outstanding.
    assert calls[1]._final == "record-id-1"
    assert read(read_ahead, calls[MIN_BATCH + 1], fake) is not None
    assert len(fake.reads[1]) == 2 * MIN_BATCH + 1


def test_at_the_frontier_it_switches_off_and_probes_again_later() -> None:
    read_ahead, fake = ResultReadAhead(), FakeBackend()
    calls = handles(read_ahead, 10)
    assert read(read_ahead, calls[0], fake) is None  # not final yet: off
    assert len(fake.reads) == 1
    for _ in range(PROBE_EVERY - 1):
        assert read(read_ahead, calls[0], fake) is None
    assert len(fake.reads) == 1  # off: no reads at all
    fake.final = {h.invocation_id for h in calls}
    assert read(read_ahead, calls[0], fake) == "record-id-0"  # the probe
    assert len(fake.reads) == 2


def test_nothing_to_read_ahead_of_reads_nothing() -> None:
    read_ahead, fake = ResultReadAhead(), FakeBackend()
    [only] = handles(read_ahead, 1)
    assert read(read_ahead, only, fake) is None
    assert fake.reads == []


def test_dropped_handles_are_not_held_or_read() -> None:
    read_ahead, fake = ResultReadAhead(), FakeBackend()
    kept = handles(read_ahead, 1)[0]
    handles(read_ahead, 5)  # dropped at once, like fire-and-forget calls
    gc.collect()
    assert read(read_ahead, kept, fake) is None
    assert fake.reads == []


def test_forgotten_handles_are_not_read_ahead() -> None:
    read_ahead, fake = ResultReadAhead(), FakeBackend()
    calls = handles(read_ahead, 3)
    read_ahead.forget(calls[1].invocation_id)
    read(read_ahead, calls[0], fake)
    assert fake.reads == [["id-0", "id-2"]]


def test_entries_of_dropped_handles_are_swept_as_calls_go_on() -> None:
    read_ahead = ResultReadAhead()
    kept = handles(read_ahead, 1)
    for n in range(1, 3 * SWEEP_AT_LEAST):
        handles(read_ahead, 1, start=n)  # dropped at once
    # Swept whenever the table doubles: it never holds more than a sweep's worth of the dead.
    assert len(read_ahead._handles) < 2 * SWEEP_AT_LEAST
    assert kept[0].invocation_id in read_ahead._handles
