"""The app the soak test runs: five tasks whose bodies log their execution interval.

Two are keyed (``limit_one``, ``limit_two``: running_limit 1 and 2 per ``key``); ``limit_stack``
uses two limits, one keyed (``soak-keyed``: 1 per ``key``) and one shared with a rate
(``soak-shared``: 3 at once, 60 starts a second); ``no_limit``
has no running concurrency control, so on Redis a call registered while a runner waits for work
is claimed by the registration itself and handed straight to that runner.

Runner processes load it with ``python -m taskgate runner start --app soak_app:app``; the driver
(``soak.py``) imports it to register calls. Both sides read the same environment variables:

- ``SOAK_BACKEND``: the backend URL (required).
- ``SOAK_APP_ID``: the app id, so that every soak run has a namespace of its own (required).
- ``SOAK_INTERVALS``: the JSON-lines file every body appends its interval to (required to run
  a body; the driver only registers calls, so it may import the module without it).
- ``SOAK_SLOW_FRACTION``: optional, default 0: the fraction of runs that sleep longer than the
  lease (``SLOW_SLEEP_SECONDS``), so the heartbeat has to renew their claims.

Each body sleeps a few milliseconds, draws its outcome (success, a retryable
:class:`TransientError`, or a non-retryable :class:`FatalError`), then appends one line
``{"id", "attempt", "key", "limit", "pid", "start", "end", "outcome"}`` to the intervals file
with a single ``os.write`` on an ``O_APPEND`` descriptor, so lines of concurrent writers never
interleave. The line is written at the very end of the body: a run killed half-way leaves none.
``limit`` is the task's running_limit, or ``UNLIMITED`` (0) for ``no_limit``.

``limit_timeout`` (``running_limit=1`` per ``key``, ``timeout=TIMEOUT_SECONDS``) is the task
whose runs are interrupted: some of its bodies hang (``HANG_SECONDS``, in short sleeps) until
their timeout interrupts them, and the driver cancels some invocations while they run. Its body
records its line in a ``finally`` block, so an interrupted run records the instant it stopped
(``outcome`` ``timeout`` or ``cancelled``): the slot-overlap check covers those runs too. The
interruption is an exception raised between two bytecodes, anywhere in the body, so the write
is retried if one lands around it (a line written twice is the same line, and the checks read
it once).
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from soak_checks import UNLIMITED

from taskgate import App, ConcurrencyControlType
from taskgate.errors import InvocationCancelledError, TaskTimeoutError
from taskgate.invocation import Invocation

LEASE_SECONDS = 1.0
SHUTDOWN_GRACE_SECONDS = 1.0
MAX_RETRIES = 3
RETRY_PROBABILITY = 0.10
FATAL_PROBABILITY = 0.02
MIN_SLEEP_SECONDS = 0.002
MAX_SLEEP_SECONDS = 0.015
SLOW_SLEEP_SECONDS = (1.5 * LEASE_SECONDS, 2.5 * LEASE_SECONDS)

OUTCOME_OK = "ok"
OUTCOME_RETRY = "retry"
OUTCOME_FATAL = "fatal"
OUTCOME_TIMEOUT = "timeout"
OUTCOME_CANCELLED = "cancelled"
OUTCOME_INTERRUPTED = "interrupted"
"""Some other exception stopped the body (its type is appended: ``interrupted: X``)."""
OUTCOME_NOT_INTERRUPTED = "not interrupted"
"""A hanging body ran to its end: its timeout never interrupted it (a violation)."""

TIMEOUT_SECONDS = 0.25
HANG_PROBABILITY = 0.15
HANG_SECONDS = 2.0
HANG_STEP_SECONDS = 0.01


class TransientError(Exception):
    """A failure the tasks retry (listed in ``retry_for``)."""


class FatalError(Exception):
    """A failure the tasks do not retry: the invocation fails at once."""


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"soak_app needs the environment variable {name}")
    return value


app = App(
    _required_env("SOAK_APP_ID"),
    backend=_required_env("SOAK_BACKEND"),
    lease_seconds=LEASE_SECONDS,
    shutdown_grace_seconds=SHUTDOWN_GRACE_SECONDS,
)


def draw_sleep(rng: random.Random) -> float:
    """How long one run sleeps: a few ms, or longer than the lease for a slow run."""
    if rng.random() < float(os.environ.get("SOAK_SLOW_FRACTION") or 0):
        return rng.uniform(*SLOW_SLEEP_SECONDS)
    return rng.uniform(MIN_SLEEP_SECONDS, MAX_SLEEP_SECONDS)


def draw_outcome(rng: random.Random) -> str:
    """The outcome of one run: mostly ``ok``, sometimes ``retry``, rarely ``fatal``."""
    roll = rng.random()
    if roll < FATAL_PROBABILITY:
        return OUTCOME_FATAL
    if roll < FATAL_PROBABILITY + RETRY_PROBABILITY:
        return OUTCOME_RETRY
    return OUTCOME_OK


def append_interval(line: dict[str, Any]) -> None:
    """Append ``line`` as one JSON line to ``SOAK_INTERVALS`` with a single ``os.write``."""
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    fd = os.open(_required_env("SOAK_INTERVALS"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data):  # never seen on a local file system; fail loudly if it happens
        raise RuntimeError(f"short write to the intervals file: {written} of {len(data)} bytes")


def append_interval_surely(line: dict[str, Any]) -> None:
    """:func:`append_interval`, retried when an interruption lands around the write.

    A timeout and a cancel are the only interruptions, so a few tries always get through; a
    try interrupted after its write returned writes the same line again (read once by
    ``load_intervals``).
    """
    for _ in range(5):
        try:
            append_interval(line)
            return
        except (TaskTimeoutError, InvocationCancelledError):
            continue


def finish_run(me: Invocation[Any], key: str, limit: int, start: float, outcome: str) -> None:
    """Record the run's interval (the last thing a body does), then raise the drawn failure.

    Raises:
        TransientError: ``outcome`` is ``retry``.
        FatalError: ``outcome`` is ``fatal``.
    """
    append_interval(
        {
            "id": me.invocation_id,
            "attempt": me.attempt,
            "key": key,
            "limit": limit,
            "pid": os.getpid(),
            "start": start,
            "end": time.time(),
            "outcome": outcome,
        }
    )
    if outcome == OUTCOME_RETRY:
        raise TransientError(f"transient failure of {me.invocation_id} attempt {me.attempt}")
    if outcome == OUTCOME_FATAL:
        raise FatalError(f"fatal failure of {me.invocation_id} attempt {me.attempt}")


def run_body(me: Invocation[Any], key: str, limit: int) -> tuple[str, int]:
    """The soak's task body: sleep a few ms, draw an outcome, record the interval, act on it.

    Returns ``(key, attempt)`` on success so the driver can cross-check the stored attempt.
    """
    rng = random.Random()
    start = time.time()
    time.sleep(draw_sleep(rng))
    finish_run(me, key, limit, start, draw_outcome(rng))
    return key, me.attempt


@app.task(
    running_concurrency=ConcurrencyControlType.KEYS,
    key_arguments=("key",),
    running_limit=1,
    max_retries=MAX_RETRIES,
    retry_for=(TransientError,),
)
def limit_one(key: str, seq: int) -> tuple[str, int]:
    """At most one run per ``key`` at a time (``seq`` only tells calls apart in logs)."""
    return run_body(limit_one.invocation, key, 1)


@app.task(
    running_concurrency=ConcurrencyControlType.KEYS,
    key_arguments=("key",),
    running_limit=2,
    max_retries=MAX_RETRIES,
    retry_for=(TransientError,),
)
def limit_two(key: str, seq: int) -> tuple[str, int]:
    """At most two runs per ``key`` at a time (``seq`` only tells calls apart in logs)."""
    return run_body(limit_two.invocation, key, 2)


# limit_stack: two limits, one of them keyed, and a rate (checked by soak_limits.py).
STACK_CONCURRENCY = 3
stack_shared = app.limit("soak-shared", concurrency=STACK_CONCURRENCY, rate="60/1s")
stack_keyed = app.limit("soak-keyed", concurrency=1, key="key")


@app.task(
    limits=[stack_shared, stack_keyed],
    max_retries=MAX_RETRIES,
    retry_for=(TransientError,),
)
def limit_stack(key: str, seq: int) -> tuple[str, int]:
    """At most one run per ``key`` (``soak-keyed``), 3 runs at once and 60 starts a second over
    all keys (``soak-shared``); its lines carry limit 1, the per-key limit."""
    return run_body(limit_stack.invocation, key, 1)


def interruptible_body(me: Invocation[Any], key: str, limit: int) -> tuple[str, int]:
    """A body that may hang until its timeout (or a cancel) interrupts it.

    With probability ``HANG_PROBABILITY`` it sleeps ``HANG_SECONDS`` in short steps (each
    step a point where the interruption lands); otherwise it runs like :func:`run_body`. The
    line is written in ``finally``, whatever stopped the body.
    """
    rng = random.Random()
    attempt = me.attempt
    start = time.time()
    outcome = OUTCOME_INTERRUPTED
    try:
        if rng.random() < HANG_PROBABILITY:
            deadline = time.monotonic() + HANG_SECONDS
            while time.monotonic() < deadline:
                time.sleep(HANG_STEP_SECONDS)
            outcome = OUTCOME_NOT_INTERRUPTED
        else:
            time.sleep(draw_sleep(rng))
            outcome = draw_outcome(rng)
    except TaskTimeoutError:
        outcome = OUTCOME_TIMEOUT
        raise
    except InvocationCancelledError:
        outcome = OUTCOME_CANCELLED
        raise
    except BaseException as exc:
        outcome = f"{OUTCOME_INTERRUPTED}: {type(exc).__name__}"
        raise
    finally:
        append_interval_surely(
            {
                "id": me.invocation_id,
                "attempt": attempt,
                "key": key,
                "limit": limit,
                "pid": os.getpid(),
                "start": start,
                "end": time.time(),
                "outcome": outcome,
            }
        )
    if outcome == OUTCOME_RETRY:
        raise TransientError(f"transient failure of {me.invocation_id} attempt {attempt}")
    if outcome in (OUTCOME_FATAL, OUTCOME_NOT_INTERRUPTED):
        raise FatalError(f"{outcome} failure of {me.invocation_id} attempt {attempt}")
    return key, attempt


@app.task(
    running_concurrency=ConcurrencyControlType.KEYS,
    key_arguments=("key",),
    running_limit=1,
    timeout=TIMEOUT_SECONDS,
    max_retries=MAX_RETRIES,
    retry_for=(TransientError, TaskTimeoutError),
)
def limit_timeout(key: str, seq: int) -> tuple[str, int]:
    """At most one run per ``key``; a run longer than ``TIMEOUT_SECONDS`` is interrupted and
    retried (``TaskTimeoutError`` is in ``retry_for``), then fails once retries are used up."""
    return interruptible_body(limit_timeout.invocation, key, 1)


@app.task(max_retries=MAX_RETRIES, retry_for=(TransientError,))
def no_limit(key: str, seq: int) -> tuple[str, int]:
    """No running concurrency control: runs of one ``key`` may overlap freely.

    ``key`` only labels the runs (the checks skip ``UNLIMITED`` lines for limits, not for the
    rest). On Redis this is the task a waiting runner can be handed at registration.
    """
    return run_body(no_limit.invocation, key, UNLIMITED)


@app.task(
    running_concurrency=ConcurrencyControlType.KEYS,
    key_arguments=("key",),
    running_limit=1,
    max_retries=1,
    retry_for=(TransientError,),
)
def retry_then_slow(key: str) -> int:
    """Not used by the soak: the probe of ``repro_retry_reclaim.py``.

    The first run fails at once with a retryable error; the retry outlives the lease (2.5x), so
    its runner's heartbeat must renew the claim for the whole run.
    """
    me = retry_then_slow.invocation
    start = time.time()
    if me.attempt > 1:
        time.sleep(2.5 * LEASE_SECONDS)
    finish_run(me, key, 1, start, OUTCOME_RETRY if me.attempt == 1 else OUTCOME_OK)
    return me.attempt
