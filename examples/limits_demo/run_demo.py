"""Run the three limit recipes of tasks.py on 2 runner processes and check every limit held.

The demo starts a fresh store (an SQLite file in a temporary folder, or with ``--backend redis``
a private redis-server), the fake provider in a thread, and ``--runners`` runner processes
(``taskgate runner start --app tasks:app``). It then runs the recipes one after the other:
registers the calls, waits for every result, fetches what the provider recorded, and prints one
table: calls in flight at once per limit against the limit, starts in any window of a rate per
key against the rate, the fairness figure, and each recipe's time against the ideal. At the end
``app.limits()`` must show no slot held and no invocation waiting.

Exit code: 0 when nothing exceeded a limit and nothing failed, 1 on any violation, 2 when the
demo could not run (the message says why).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tasks
from checks import (
    Admission,
    Call,
    Row,
    concurrency_row,
    fairness_row,
    format_table,
    ideal_seconds,
    per_key_concurrency_row,
    rate_row,
    time_row,
)
from provider import PROVIDER_URL_ENV, recorded_calls, start_provider
from runners import RunnerError, Runners, runner_env

from taskgate import Invocation
from taskgate.errors import ResultTimeoutError
from taskgate.status import InvocationStatus as S
from taskgate.testing import RedisServer
from taskgate.urls import redact_url

EXIT_VIOLATION = 1
EXIT_CANNOT_RUN = 2
SMALL_TENANT = "small"
BIG_TENANT = "big"


class DemoError(Exception):
    """The demo cannot run as configured; the message says what to do."""


# --- the store ---------------------------------------------------------------------------------


@contextlib.contextmanager
def store(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh store's URL: ``sqlite`` (a file in ``workdir``), ``redis`` (a private server)
    or any backend URL (used as is: the demo purges the app's data in it first)."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'limits-demo.db'}"
    elif backend == "redis":
        with RedisServer() as server:
            yield server.url
    else:
        yield backend


# --- the recipes -------------------------------------------------------------------------------


def wait_all(invocations: Sequence[Invocation[Any]], timeout: float) -> tuple[int, int]:
    """Wait until every invocation is final, for ``timeout`` seconds in all; how many failed,
    and how many were still not final then (stuck: each is described on stderr)."""
    deadline = time.monotonic() + timeout
    failed = stuck = 0
    for invocation in invocations:
        try:
            invocation.get_result(timeout=max(0.0, deadline - time.monotonic()))
        except ResultTimeoutError:
            stuck += 1
            print(
                f"  stuck after {timeout} s: {invocation.task_id} {invocation.invocation_id} "
                f"{invocation.status.value}, blocked by {invocation.blocked_by()}",
                file=sys.stderr,
            )
        except Exception as exc:
            print(f"  invocation {invocation.invocation_id} failed: {exc!r}", file=sys.stderr)
            failed += 1
    return failed, stuck


def run_calls(
    recipe: str, invocations: Sequence[Invocation[Any]], started: float, args: argparse.Namespace
) -> tuple[list[Call], float, Row]:
    """Wait for a recipe's invocations; its calls at the provider, its wall time, a count row."""
    failed, stuck = wait_all(invocations, args.timeout)
    seconds = time.time() - started
    calls = [Call.from_json(c) for c in recorded_calls(args.provider_url, recipe)]
    ok = not failed and not stuck and len(calls) == len(invocations)
    seen = f"{len(calls)} calls, {failed} failed, {stuck} stuck"
    return (
        calls,
        seconds,
        Row(recipe, "every invocation made one call", seen, str(len(invocations)), ok),
    )


def admissions(invocations: Sequence[Invocation[Any]]) -> list[Admission]:
    """When each invocation was parked (first) and admitted (first), from the store's history."""
    found = []
    for invocation in invocations:
        record = tasks.app.backend.get(invocation.invocation_id)
        history = record.history if record is not None else []
        parked = [t.timestamp for t in history if t.status is S.CONCURRENCY_CONTROLLED]
        admitted = [t.timestamp for t in history if t.status is S.RUNNING]
        tenant = str(invocation.arguments["tenant_id"])
        found.append(Admission(tenant, min(parked, default=None), min(admitted, default=None)))
    return found


def recipe_a(args: argparse.Namespace) -> list[Row]:
    """(a) One sync per customer, at most 3 CRM API calls at a time and 10 a second in all."""
    customers = [f"customer-{i}" for i in range(1, args.customers + 1)]
    started = time.time()
    invocations = [
        tasks.sync_customer(customer, page) for page in range(args.syncs) for customer in customers
    ]
    calls, seconds, count = run_calls("a", invocations, started, args)
    limit = tasks.crm_api
    assert limit.concurrency is not None and limit.rate is not None
    ideal = ideal_seconds(len(invocations), limit, tasks.WORK_SECONDS, chain=args.syncs)
    return [
        count,
        per_key_concurrency_row("a", "one sync per customer", calls, "customer_id", 1),
        concurrency_row("a", f"limit {limit.name}", calls, limit.concurrency),
        rate_row("a", f"limit {limit.name}", calls, limit.rate),
        time_row("a", seconds, ideal),
    ]


def recipe_b(args: argparse.Namespace) -> list[Row]:
    """(b) One LLM budget for two tasks; a small tenant is not starved behind a big one."""
    started = time.time()
    invocations: list[Invocation[Any]] = []
    for n in range(args.big):  # the big tenant's backlog first, both tasks
        task_call = tasks.summarize(BIG_TENANT, n) if n % 2 else tasks.embed(BIG_TENANT, f"t{n}")
        invocations.append(task_call)
    invocations += [tasks.embed(SMALL_TENANT, f"s{n}") for n in range(args.small)]
    calls, seconds, count = run_calls("b", invocations, started, args)
    limit = tasks.llm
    assert limit.concurrency is not None and limit.rate is not None
    return [
        count,
        concurrency_row("b", f"limit {limit.name} (2 tasks)", calls, limit.concurrency),
        rate_row("b", f"limit {limit.name}", calls, limit.rate),
        fairness_row("b", admissions(invocations), SMALL_TENANT, limit.concurrency + args.small),
        time_row("b", seconds, ideal_seconds(len(invocations), limit, tasks.WORK_SECONDS)),
    ]


def recipe_c(args: argparse.Namespace) -> list[Row]:
    """(c) The partner API: at most 5 calls a second per API key."""
    keys = [f"key-{i}" for i in range(1, args.api_keys + 1)]
    started = time.time()
    invocations = [tasks.push_order(key, n) for n in range(args.orders) for key in keys]
    calls, seconds, count = run_calls("c", invocations, started, args)
    limit = tasks.partner_api
    assert limit.rate is not None
    return [
        count,
        rate_row("c", f"limit {limit.name}", calls, limit.rate, label="api_key"),
        time_row("c", seconds, ideal_seconds(args.orders, limit, tasks.WORK_SECONDS)),
    ]


def leftovers_row() -> Row:
    """``app.limits()`` after the run: no slot may still be held, no invocation still waiting."""
    left = [
        f"{info.name}: {info.slots_held} held, {info.waiting} waiting"
        for info in tasks.app.limits()
        if info.slots_held or info.waiting
    ]
    seen = "; ".join(left) or "none"
    return Row("all", "slots held or waiters left (app.limits())", seen, "none", not left)


# --- main --------------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> list[Row]:
    """Start the store, the provider and the runners; run the recipes; stop everything."""
    with store(args.backend, workdir) as url:
        tasks.app.conf.backend = url
        tasks.app.purge()  # leftovers of another run must not reach this provider
        server = start_provider()
        args.provider_url = server.url
        runners = Runners(
            args.runners, args.threads, runner_env(url, server.url, PROVIDER_URL_ENV), workdir
        )
        print(f"backend:  {redact_url(url)}")
        print(f"provider: {server.url}")
        print(
            f"runners:  {args.runners} x `taskgate runner start --app tasks:app "
            f"--threads {args.threads}`"
        )
        try:
            runners.start(lambda: len(tasks.app.backend.stats().runners))
            rows: list[Row] = []
            for recipe in (recipe_a, recipe_b, recipe_c):
                rows += recipe(args)
            rows.append(leftovers_row())
            problems = runners.stop()
            rows.append(
                Row(
                    "all",
                    "runners stopped cleanly, no error logged",
                    "; ".join(problems) or "yes",
                    "yes",
                    not problems,
                )
            )
            return rows
        except RunnerError as exc:
            raise DemoError(str(exc)) from exc
        finally:
            runners.kill()
            server.shutdown()
            server.server_close()
            tasks.app.backend.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options (``--help`` lists them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add(
        "--backend",
        default="sqlite",
        help="sqlite (a fresh file), redis (a private server) or a backend URL "
        "(default %(default)s)",
    )
    add("--runners", type=int, default=2, help="runner processes (default %(default)s)")
    add("--threads", type=int, default=4, help="threads per runner (default %(default)s)")
    add("--customers", type=int, default=4, help="(a) customers (default %(default)s)")
    add("--syncs", type=int, default=6, help="(a) syncs per customer (default %(default)s)")
    add("--big", type=int, default=24, help="(b) calls of the big tenant (default %(default)s)")
    add("--small", type=int, default=2, help="(b) calls of the small tenant (default %(default)s)")
    add("--api-keys", type=int, default=3, help="(c) partner API keys (default %(default)s)")
    add("--orders", type=int, default=8, help="(c) orders per API key (default %(default)s)")
    add(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for each recipe (default %(default)s)",
    )
    add("--keep", action="store_true", help="keep the work folder (runner logs, SQLite file)")
    args = parser.parse_args(argv)
    sizes = (args.runners, args.threads, args.customers, args.syncs, args.big, args.small)
    if min(*sizes, args.api_keys, args.orders) < 1:
        parser.error("every size must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; the exit code is described in the module docstring."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="taskgate-limits-demo-"))
    code = EXIT_CANNOT_RUN
    try:
        rows = run(args, workdir)
        print()
        print(format_table(rows))
        violations = [row for row in rows if row.ok is False]
        print()
        for row in violations:
            print(f"VIOLATION ({row.recipe}) {row.check}: {row.seen}, allowed {row.allowed}")
        code = EXIT_VIOLATION if violations else 0
        if not violations:
            print("ok: no limit exceeded, every call made once, nothing left held or waiting")
    except DemoError as exc:
        print(f"\ncannot run the demo: {exc}", file=sys.stderr)
    finally:
        if code == 0 and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work folder kept: {workdir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
