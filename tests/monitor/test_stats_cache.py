"""The monitor's shared ``stats()`` read: the overview, the limits page and ``/metrics`` of one
refresh make one read, threads arriving during a read wait for it, errors are not kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import TracebackType

import pytest
from starlette.testclient import TestClient

from taskgate import App
from taskgate.errors import BackendError
from taskgate.monitor.stats_cache import StatsCache
from taskgate.record import BackendStats
from tests.conftest import WAIT


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stats_calls(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BackendStats]]:
    """Every answer of ``app.backend.stats()`` from now on, in order."""
    calls: list[BackendStats] = []
    original = app.backend.stats

    def counting() -> BackendStats:
        stats = original()
        calls.append(stats)
        return stats

    monkeypatch.setattr(app.backend, "stats", counting)
    yield calls


def test_pages_and_metrics_of_one_refresh_share_one_read(
    app: App, monitor: TestClient, stats_calls: list[BackendStats]
) -> None:
    @app.task
    def add(a: int) -> int:
        return a

    add(1)
    clock = Clock()
    monitor.app.state.monitor.stats.clock = clock  # type: ignore[attr-defined]
    # (The limits page reads only the waiting counts: Backend.parked_counts, not stats().)
    for path in ("/api/overview", "/metrics", "/", "/fragments/overview"):
        assert monitor.get(path).status_code == 200, path
    assert len(stats_calls) == 1
    assert monitor.get("/api/overview").json()["totals"]["registered"] == 1

    add(2)
    clock.now += 1.5  # past the TTL: the next reader reads again
    assert monitor.get("/api/overview").json()["totals"]["registered"] == 2
    assert len(stats_calls) == 2


def test_an_answer_is_kept_for_the_ttl_only(app: App, stats_calls: list[BackendStats]) -> None:
    clock = Clock()
    cache = StatsCache(app.backend, ttl=1.0, clock=clock)
    first = cache.get()
    clock.now += 0.9
    assert cache.get() is first
    clock.now += 0.2
    assert cache.get() is not first
    assert len(stats_calls) == 2


def test_a_failed_read_is_not_kept(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = StatsCache(app.backend, clock=Clock())
    original = app.backend.stats

    def failing() -> BackendStats:
        raise BackendError("store down")

    monkeypatch.setattr(app.backend, "stats", failing)
    with pytest.raises(BackendError):
        cache.get()
    monkeypatch.setattr(app.backend, "stats", original)
    assert isinstance(cache.get(), BackendStats)


class ObservedLock:
    """A lock that says when a second thread starts waiting for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals = 0
        self._guard = threading.Lock()
        self.second_waiting = threading.Event()

    def __enter__(self) -> None:
        with self._guard:
            self._arrivals += 1
            if self._arrivals == 2:
                self.second_waiting.set()
        self._lock.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()


def test_threads_arriving_during_a_read_take_its_answer(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starlette runs reads in a thread pool: a read in flight is shared, not repeated."""
    original = app.backend.stats
    reading, release = threading.Event(), threading.Event()
    calls: list[BackendStats] = []

    def slow() -> BackendStats:
        reading.set()
        release.wait(WAIT)
        calls.append(original())
        return calls[-1]

    monkeypatch.setattr(app.backend, "stats", slow)
    cache = StatsCache(app.backend, clock=Clock())
    lock = ObservedLock()
    cache._lock = lock  # type: ignore[assignment]
    answers: list[BackendStats] = []
    first = threading.Thread(target=lambda: answers.append(cache.get()))
    first.start()
    assert reading.wait(WAIT)
    second = threading.Thread(target=lambda: answers.append(cache.get()))
    second.start()
    assert lock.second_waiting.wait(WAIT)
    release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert len(calls) == 1
    assert len(answers) == 2 and answers[0] is answers[1]
