"""``Backend.announce_runner`` / ``runner_infos`` / ``forget_runner``: runner descriptions that
replace each other, expire on their own and go with a graceful stop."""

from __future__ import annotations

import dataclasses
import time

from taskgate.backends.base import Backend
from taskgate.record import (
    DURATION_BUCKETS,
    MinuteCounters,
    RunnerInfo,
    RunningEntry,
    TaskRunCounters,
)


def info(runner_id: str, **fields: object) -> RunnerInfo:
    now = time.time()
    described = RunnerInfo(
        runner_id=runner_id,
        host="host-1",
        pid=4242,
        kind="thread",
        threads=4,
        queues=("default", "slow"),
        started_at=now - 60,
        heartbeat_at=now,
        running=(RunningEntry("inv-1", "tests.a", 2, now - 1.5),),
        tasks={
            "tests.a": TaskRunCounters(
                {"success": 3, "failed": 1},
                tuple(1 if i == 2 else 0 for i in range(len(DURATION_BUCKETS) + 1)),
                0.25,
            )
        },
        minutes=(MinuteCounters(int(now // 60), 4, 1, 0.25),),
    )
    return dataclasses.replace(described, **fields)  # type: ignore[arg-type]


def test_an_announced_runner_is_described_until_forgotten(backend: Backend) -> None:
    first = info("runner-b")
    backend.announce_runner(first, 30.0)
    backend.announce_runner(info("runner-a", queues=None, running=()), 30.0)
    described = backend.runner_infos()
    assert [i.runner_id for i in described] == ["runner-a", "runner-b"]
    assert described[1] == first
    assert described[0].queues is None and described[0].running == ()
    backend.forget_runner("runner-b")
    assert [i.runner_id for i in backend.runner_infos()] == ["runner-a"]
    assert "runner-b" not in backend.stats().runners


def test_a_new_announcement_replaces_the_last(backend: Backend) -> None:
    backend.announce_runner(info("runner-a"), 30.0)
    later = info("runner-a", running=(), threads=8)
    backend.announce_runner(later, 30.0)
    assert backend.runner_infos() == [later]


def test_an_announcement_expires_after_its_ttl(backend: Backend) -> None:
    backend.announce_runner(info("runner-gone"), 0.0)  # expired as soon as it is written
    backend.announce_runner(info("runner-live"), 30.0)
    assert [i.runner_id for i in backend.runner_infos()] == ["runner-live"]


def test_purge_drops_runner_descriptions(backend: Backend) -> None:
    backend.announce_runner(info("runner-a"), 30.0)
    backend.purge()
    assert backend.runner_infos() == []
