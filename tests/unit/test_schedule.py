"""Periodic tasks: cron/every validation at decoration time, and the tick math (pure)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from taskgate import App
from taskgate.errors import InvalidTaskOptionsError
from taskgate.runner.periodic import periodic_tasks
from taskgate.schedule import is_periodic, next_tick
from taskgate.task import TaskOptions


def no_parameters() -> None:
    return None


def all_defaulted(x: int = 1, *args: Any, y: str = "a", **kwargs: Any) -> None:
    return None


def needs_argument(x: int, y: int = 2) -> None:
    return None


def epoch(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"cron": "*/5 * * * *"},
        {"cron": "0 3 * * mon-fri"},
        {"every": 10.0},
        {"every": 1},
        {"every": 0.5},
    ],
)
@pytest.mark.parametrize("func", [no_parameters, all_defaulted])
def test_valid_periodic_options_are_accepted(app: App, options: dict[str, Any], func: Any) -> None:
    task = app.task(**options)(func)
    assert is_periodic(task.options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"cron": "not a cron"}, "5-field cron expression"),
        ({"cron": "* * * *"}, "5-field cron expression"),
        ({"cron": "* * * * * *"}, "5-field cron expression"),
        ({"cron": "61 * * * *"}, "5-field cron expression"),
        ({"cron": 5}, "5-field cron expression"),
        ({"cron": "* * * * *", "every": 5.0}, "both"),
        ({"every": 0}, "every"),
        ({"every": -1.0}, "every"),
        ({"every": math.nan}, "every"),
        ({"every": math.inf}, "every"),
        ({"every": True}, "every"),
        ({"every": "10"}, "every"),
    ],
)
def test_invalid_periodic_options_are_refused(
    app: App, options: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidTaskOptionsError, match=match):
        app.task(**options)(no_parameters)


@pytest.mark.parametrize("options", [{"cron": "* * * * *"}, {"every": 1.0}])
def test_periodic_task_with_a_parameter_without_default_is_refused(
    app: App, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidTaskOptionsError, match="without default: x"):
        app.task(**options)(needs_argument)


def test_a_task_without_cron_or_every_is_not_periodic(app: App) -> None:
    assert not is_periodic(app.task(needs_argument).options)


# --- the tick math -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "after", "expected"),
    [
        (10.0, 0.0, 10.0),
        (10.0, 5.0, 10.0),
        (10.0, 10.0, 20.0),  # strictly after
        (10.0, 9.999, 10.0),
        (1.5, 3.0, 4.5),
        (0.5, 1_700_000_000.2, 1_700_000_000.5),
        (3600.0, 1_700_000_001.0, 1_700_002_800.0),  # on the epoch-aligned hour grid
    ],
)
def test_every_ticks_on_a_grid_aligned_on_the_epoch(
    every: float, after: float, expected: float
) -> None:
    assert next_tick(TaskOptions(every=every), after) == pytest.approx(expected)


def test_every_ticks_are_the_same_whenever_a_runner_starts() -> None:
    options = TaskOptions(every=7.0)
    ticks_a = [next_tick(options, 1_000.0)]
    ticks_b = [next_tick(options, 1_003.5)]
    for ticks in (ticks_a, ticks_b):
        for _ in range(5):
            ticks.append(next_tick(options, ticks[-1]))
    assert ticks_a[1:] == ticks_b[:-1]  # 1001, 1008... and 1008...: one grid
    assert all(tick % 7.0 == 0 for tick in ticks_a + ticks_b)


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("*/5 * * * *", epoch(2026, 1, 1, 12, 0), epoch(2026, 1, 1, 12, 5)),  # strictly after
        ("*/5 * * * *", epoch(2026, 1, 1, 12, 0) + 0.5, epoch(2026, 1, 1, 12, 5)),
        ("*/5 * * * *", epoch(2026, 1, 1, 12, 4) + 59.9, epoch(2026, 1, 1, 12, 5)),
        ("0 3 * * *", epoch(2026, 1, 1, 12, 0), epoch(2026, 1, 2, 3, 0)),  # UTC, not local
        ("30 0 1 * *", epoch(2026, 1, 31, 23, 0), epoch(2026, 2, 1, 0, 30)),
        ("0 0 * * mon", epoch(2026, 1, 1, 0, 0), epoch(2026, 1, 5, 0, 0)),  # 2026-01-01: Thu
    ],
)
def test_cron_ticks_in_utc(cron: str, after: float, expected: float) -> None:
    assert next_tick(TaskOptions(cron=cron), after) == expected


def test_cron_ticks_do_not_depend_on_the_local_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    options = TaskOptions(cron="0 3 * * *")
    after = epoch(2026, 6, 1, 12, 0)
    expected = epoch(2026, 6, 2, 3, 0)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert next_tick(options, after) == expected
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_next_tick_of_a_task_that_is_not_periodic_raises() -> None:
    with pytest.raises(ValueError, match="neither cron nor every"):
        next_tick(TaskOptions(), 0.0)


def test_scheduler_only_for_periodic_tasks_of_served_queues(app: App) -> None:
    @app.task(every=5.0)
    def periodic_default() -> None:
        return None

    @app.task
    def plain() -> None:
        return None

    assert [t.task_id for t in periodic_tasks(app, None)] == [periodic_default.task_id]
    assert periodic_tasks(app, frozenset({"default"})) != []
    assert periodic_tasks(app, frozenset({"other"})) == []
