"""Fire bursts of calls at a provider that must never be called concurrently per account.

For each policy of ``tasks.py`` the demo purges the app, registers ``--calls`` calls for each of
``--accounts`` accounts from ``--senders`` threads at once, waits until every invocation is
final, and asks the provider what it saw. It prints one table row per policy and exits 0 when
the three controlled policies caused no collision, 1 when one did (or an invocation failed),
and 2 when the demo could not run (no provider URL, provider unreachable, no runner).

Runners: either already running (``taskgate runner start --app tasks:app``, see
docs/operations/deployment.md), or ``--with-runner`` starts a ThreadRunner in this process. The
provider: ``DEMO_PROVIDER_URL`` when set, else (with ``--with-runner`` only) one started in a
thread here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import tasks
from provider import start_provider

from taskgate import Invocation, ReusedInvocation, Task
from taskgate.errors import ConcurrencyControlledError, ResultTimeoutError

EXIT_CANNOT_RUN = 2

COLUMNS = (
    ("policy", 30),
    ("registered", 10),
    ("provider calls", 14),
    ("collisions", 10),
    ("dropped", 7),
    ("folded", 6),
    ("wall time", 9),
)


class DemoError(Exception):
    """The demo cannot run as configured; the message says what to do."""


@dataclass(frozen=True)
class Outcomes:
    """How the distinct invocations of one burst ended."""

    succeeded: int
    dropped: int
    failed: int


@dataclass(frozen=True)
class PolicyReport:
    """One row of the table: what taskgate did and what the provider saw for one policy."""

    policy: str
    registered: int
    provider_calls: int
    collisions: int
    dropped: int
    folded: int
    failed: int
    succeeded: int
    wall_seconds: float

    def row(self) -> str:
        """The report as a table row aligned with :func:`header`."""
        cells = (
            self.policy,
            self.registered,
            self.provider_calls,
            self.collisions,
            self.dropped,
            self.folded,
            f"{self.wall_seconds:.2f} s",
        )
        return format_row(cells)


def format_row(cells: Sequence[object]) -> str:
    """Cells padded to :data:`COLUMNS` (the first left-aligned, the others right-aligned)."""
    parts = []
    for index, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True)):
        parts.append(f"{cell!s:<{width}}" if index == 0 else f"{cell!s:>{width}}")
    return "  ".join(parts)


def header() -> str:
    """The table's header line."""
    return format_row([name for name, _ in COLUMNS])


# --- the provider ------------------------------------------------------------------------------


def provider_request(url: str, method: str = "GET") -> Any:
    """Send one request to the provider and return its decoded JSON answer."""
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def provider_stats(base_url: str, policy: str) -> dict[str, int]:
    """The provider's counters for ``policy`` (zeros when it saw no call)."""
    stats: dict[str, dict[str, int]] = provider_request(f"{base_url}/stats")
    return stats.get(policy, {"calls": 0, "collisions": 0, "max_in_flight": 0})


@contextmanager
def provider(with_runner: bool) -> Iterator[str]:
    """The provider's base URL: ``DEMO_PROVIDER_URL``, or one started here for this process.

    A provider started here is only known to this process, so it needs ``--with-runner``.
    """
    url = os.environ.get(tasks.PROVIDER_URL_ENV)
    if url:
        yield url.rstrip("/")
        return
    if not with_runner:
        raise DemoError(
            f"{tasks.PROVIDER_URL_ENV} is not set: runners started elsewhere must know the "
            "provider's URL. Start `python provider.py --port 8765`, export "
            f"{tasks.PROVIDER_URL_ENV}=http://127.0.0.1:8765 in both terminals, or use "
            "--with-runner to run everything in this process."
        )
    server = start_provider()
    os.environ[tasks.PROVIDER_URL_ENV] = server.url  # read by the tasks when they run
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


# --- the runner --------------------------------------------------------------------------------


@contextmanager
def runner_in_thread(threads: int) -> Iterator[None]:
    """Run a ThreadRunner of ``threads`` threads in a daemon thread for the block."""
    tasks.app.conf.runner_cls = "ThreadRunner"
    tasks.app.conf.threads = threads
    runner = tasks.app.runner
    thread = threading.Thread(target=runner.run, name="demo-runner", daemon=True)
    thread.start()
    try:
        yield
    finally:
        runner.stop_runner_loop()
        thread.join(timeout=30)


# --- one policy --------------------------------------------------------------------------------


def burst(
    task: Task[[str], Any], accounts: Sequence[str], calls: int, senders: ThreadPoolExecutor
) -> list[Invocation[Any]]:
    """Call ``task`` ``calls`` times per account, interleaving accounts, from many threads."""
    order = [account for _ in range(calls) for account in accounts]
    return list(senders.map(task, order))


def wait_all(invocations: Sequence[Invocation[Any]], timeout: float) -> Outcomes:
    """Wait until every distinct invocation is final and count how they ended.

    Raises:
        DemoError: they were not all final within ``timeout`` seconds (no runner running?).
    """
    deadline = time.monotonic() + timeout
    distinct = {invocation.invocation_id: invocation for invocation in invocations}
    succeeded = dropped = failed = 0
    for invocation in distinct.values():
        try:
            invocation.get_result(timeout=max(0.0, deadline - time.monotonic()))
            succeeded += 1
        except ConcurrencyControlledError:
            dropped += 1
        except ResultTimeoutError:
            raise DemoError(
                f"invocations of {invocation.task_id} were not done within {timeout} s: is a "
                "runner running for app 'concurrency-demo' on the same backend, with "
                f"{tasks.PROVIDER_URL_ENV} set? (or use --with-runner)"
            ) from None
        except Exception as exc:
            print(f"  invocation {invocation.invocation_id} failed: {exc!r}", file=sys.stderr)
            failed += 1
    return Outcomes(succeeded, dropped, failed)


def reset_provider(base_url: str) -> None:
    """Clear the provider's counters.

    Raises:
        DemoError: the provider cannot be reached.
    """
    try:
        provider_request(f"{base_url}/reset", method="POST")
    except urllib.error.URLError as exc:
        raise DemoError(
            f"cannot reach the provider at {base_url} ({exc.reason}); is `python provider.py` "
            f"running there, and is {tasks.PROVIDER_URL_ENV} right?"
        ) from exc


def run_policy(
    policy: str, base_url: str, args: argparse.Namespace, senders: ThreadPoolExecutor
) -> PolicyReport:
    """Purge, reset the provider, fire the burst, wait for it and build the report."""
    tasks.app.purge()
    reset_provider(base_url)
    accounts = [f"account-{i}" for i in range(args.accounts)]
    started = time.perf_counter()
    invocations = burst(tasks.POLICIES[policy], accounts, args.calls, senders)
    outcomes = wait_all(invocations, args.timeout)
    wall_seconds = time.perf_counter() - started
    stats = provider_stats(base_url, policy)
    return PolicyReport(
        policy=policy,
        registered=sum(not isinstance(i, ReusedInvocation) for i in invocations),
        provider_calls=stats["calls"],
        collisions=stats["collisions"],
        dropped=outcomes.dropped,
        folded=sum(isinstance(i, ReusedInvocation) for i in invocations),
        failed=outcomes.failed,
        succeeded=outcomes.succeeded,
        wall_seconds=wall_seconds,
    )


# --- verdict -----------------------------------------------------------------------------------


def verdict(reports: Sequence[PolicyReport]) -> int:
    """Print notes on the reports; 0 when no controlled policy collided and nothing failed."""
    code = 0
    for report in reports:
        if report.provider_calls != report.succeeded:
            print(
                f"note: {report.policy}: the provider saw {report.provider_calls} calls for "
                f"{report.succeeded} successful invocations"
            )
        if report.failed:
            print(f"FAILED: {report.policy}: {report.failed} invocation(s) failed")
            code = 1
        if report.policy in tasks.CONTROLLED_POLICIES and report.collisions:
            print(f"FAILED: {report.policy}: {report.collisions} collision(s) at the provider")
            code = 1
        if report.policy == "no_control" and not report.collisions:
            print(
                "note: no_control caused no collision this time; try more --calls or more "
                "runner threads to see what happens without concurrency control"
            )
    if code == 0:
        print("ok: the controlled policies never called the provider concurrently per account")
    return code


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options (``--help`` lists them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--with-runner",
        action="store_true",
        help="run a ThreadRunner in this process instead of expecting runners started elsewhere",
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="threads of --with-runner (default %(default)s)"
    )
    parser.add_argument(
        "--accounts", type=int, default=5, help="accounts per burst (default %(default)s)"
    )
    parser.add_argument(
        "--calls", type=int, default=20, help="calls per account per burst (default %(default)s)"
    )
    parser.add_argument(
        "--senders", type=int, default=8, help="threads registering the calls (default %(default)s)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for each policy's burst (default %(default)s)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace, base_url: str) -> list[PolicyReport]:
    """Run every policy and print its row as soon as it is done."""
    print(header())
    reports = []
    with ThreadPoolExecutor(args.senders, thread_name_prefix="sender") as senders:
        for policy in tasks.POLICIES:
            report = run_policy(policy, base_url, args, senders)
            print(report.row(), flush=True)
            reports.append(report)
    return reports


def run_with_provider(args: argparse.Namespace) -> list[PolicyReport]:
    """Print the set-up, then run every policy (with a runner here when asked to)."""
    here = f"ThreadRunner, {args.threads} threads, in this process"
    runner = here if args.with_runner else "started elsewhere (taskgate runner start)"
    with provider(args.with_runner) as base_url:
        print(f"backend:  {tasks.app.conf.backend_url}")
        print(f"provider: {base_url}")
        print(f"runner:   {runner}")
        print(f"burst:    {args.accounts} accounts x {args.calls} calls, {args.senders} senders")
        print()
        if not args.with_runner:
            return run(args, base_url)
        tasks.app.purge()  # leftovers of an interrupted run must not reach this provider
        with runner_in_thread(args.threads):
            return run(args, base_url)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; the exit code is described in the module docstring."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        reports = run_with_provider(args)
    except DemoError as exc:
        print(f"\ncannot run the demo: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print()
    return verdict(reports)


if __name__ == "__main__":
    sys.exit(main())
