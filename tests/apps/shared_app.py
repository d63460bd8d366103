"""An app that test subprocesses import by module path (``shared_app:app``).

The backend URL and app id come from ``TASKGATE_TEST_BACKEND`` and ``TASKGATE_TEST_APP_ID``, so a
test and the processes it starts share one store and one namespace.
"""

from __future__ import annotations

import os
import sys
import time

from taskgate import App, ConcurrencyControlType

app = App(
    os.environ.get("TASKGATE_TEST_APP_ID", "shared-app"),
    backend=os.environ.get("TASKGATE_TEST_BACKEND", "memory://"),
)


@app.task(registration_concurrency=ConcurrencyControlType.ARGUMENTS)
def deduplicated(x: int) -> int:
    return x


@app.task
def plain(x: int) -> int:
    return x


@app.task(running_concurrency=ConcurrencyControlType.KEYS, key_arguments=("key",))
def exclusive(key: str, n: int, seconds: float = 0.005) -> tuple[int, float, float]:
    """Record the interval it ran in, and the process it ran in."""
    start = time.time()
    time.sleep(seconds)
    return os.getpid(), start, time.time()


def race_one_call() -> None:
    """Report ready, wait for 'go' on stdin, make the call, print the invocation id."""
    print("ready", flush=True)
    sys.stdin.readline()
    print(deduplicated(7).invocation_id, flush=True)


def hammer(rounds: int) -> None:
    """Register, claim and finish ``rounds`` invocations as fast as possible; print 'ok'."""
    from taskgate.record import Outcome, OutcomeKind

    runner_id = f"hammer-{os.getpid()}"
    done = 0
    for n in range(rounds):
        plain(n)
        for claim in app.backend.claim(runner_id, 4, 30.0, 0):
            outcome = Outcome(OutcomeKind.SUCCESS, app.serializer.dumps(claim.attempt))
            done += app.backend.finish(claim.invocation_id, runner_id, claim.attempt, outcome)
    print("ok", done, flush=True)


@app.task(running_concurrency=ConcurrencyControlType.KEYS, key_arguments=("key",))
def held(key: str, n: int, marker: str = "", hold_seconds: float = 60.0) -> tuple[int, int, float]:
    """On its first attempt, touch ``marker`` and hold the key (until killed or released).

    Returns (n, attempt, start time); later attempts return at once.
    """
    start = time.time()
    attempt = held.invocation.attempt
    if marker and attempt == 1:
        with open(marker, "w") as file:
            file.write(str(os.getpid()))
        time.sleep(hold_seconds)
    return n, attempt, start
