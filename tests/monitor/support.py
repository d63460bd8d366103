"""Helpers of the monitor tests: CSRF tokens, page text, runner descriptions, free ports."""

from __future__ import annotations

import html
import socket
import time

from starlette.testclient import TestClient

from taskgate import App
from taskgate.record import (
    DURATION_BUCKETS,
    MinuteCounters,
    RunnerInfo,
    RunningEntry,
    TaskRunCounters,
)

# An open monitor answers only requests addressed to a loopback name...
BASE_URL = "http://127.0.0.1:8787"
# ... from a client on this machine (TestClient's default client is "testclient").
LOOPBACK_CLIENT = ("127.0.0.1", 50000)


def csrf_token(client: TestClient) -> str:
    """A CSRF token for ``client`` (its cookie is now set in the client)."""
    response = client.get("/api/csrf")
    assert response.status_code == 200
    token: str = response.json()["csrf_token"]
    return token


def page_text(client: TestClient, path: str) -> str:
    """The page at ``path`` (200 expected), HTML entities decoded."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    return html.unescape(response.text)


def announce(app: App, runner_id: str = "runner-a", **fields: object) -> RunnerInfo:
    """Store a runner description as a runner's heartbeat would (kept for a minute)."""
    now = time.time()
    values: dict[str, object] = {
        "runner_id": runner_id,
        "host": "host-a.example",
        "pid": 4242,
        "kind": "thread",
        "threads": 4,
        "queues": None,
        "started_at": now - 120,
        "heartbeat_at": now,
        "running": (),
        "tasks": {},
        "minutes": (),
    }
    values.update(fields)
    info = RunnerInfo(**values)  # type: ignore[arg-type]
    app.backend.announce_runner(info, 60.0)
    return info


def counters(success: int, failed: int, durations: list[float]) -> TaskRunCounters:
    """Counters of ``success + failed`` runs taking ``durations`` seconds."""
    counts = [0] * (len(DURATION_BUCKETS) + 1)
    for seconds in durations:
        index = next((i for i, b in enumerate(DURATION_BUCKETS) if seconds <= b), -1)
        counts[index] += 1
    return TaskRunCounters(
        outcomes={"success": success, "failed": failed},
        duration_counts=tuple(counts),
        duration_sum=sum(durations),
    )


def minute(offset: int, finished: int, failed: int, seconds: float) -> MinuteCounters:
    """The counters of the minute ``offset`` minutes before this one."""
    return MinuteCounters(int(time.time() // 60) - offset, finished, failed, seconds)


def running_entry(invocation_id: str, task_id: str) -> RunningEntry:
    """What a runner announces about an invocation it runs."""
    return RunningEntry(invocation_id, task_id, 1, time.time() - 1.5)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
