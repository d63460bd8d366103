"""How fast the web monitor answers on a big store, and what it costs the runners.

For each backend (``--backends sqlite,redis``):

1. Fill a fresh store (``bench/monitor_store.py``): ``--finished`` final invocations (one in
   twenty FAILED with a traceback) and ``--waiting`` invocations parked behind 100 held
   tenant slots, with four live runner descriptions.
2. Start ``taskgate monitor`` (a real uvicorn process) on a free loopback port, request every
   page, every live fragment, every ``/api/`` read and ``/metrics`` once to warm up, then
   ``--requests`` times each, one at a time, over one kept-alive ``http.client`` connection:
   p50, p95 and max of the time to the last byte of the body, in ms.
3. Count the backend operations each endpoint makes, and time them (the monitor app built in
   this process on a backend whose methods count and time their calls): what one open
   monitor adds to the store, since runners share nothing else with it, and which read makes
   a slow page slow.
4. Runner throughput: ``--tasks`` no-op calls run by a ThreadRunner in this process with no
   monitor, with a poller requesting the overview's fragment every 2 s (an open tab), and
   with one requesting every endpoint once a second; modes alternated ``--repeat`` times;
   tasks/s, medians (``--tasks 0`` skips it).

Prints a Markdown table per backend; never asserts on timing (BENCHMARKS.md keeps figures).

    .venv/bin/python bench/monitor.py [--backends sqlite,redis] [--finished 100000]
        [--waiting 10000] [--requests 20] [--tasks 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
DB = HERE.parent / ".taskgate" / "bench-monitor.db"

# The endpoints a person (pages) or a script (/api/, /metrics) requests; {failed} and {waiting}
# are an invocation id of each kind, {task} a task id, {prefix} the first characters of an id,
# {cursor} the cursor of the list's second page. Fragments are what open pages poll.
ENDPOINTS = (
    "/",
    "/fragments/overview",
    "/invocations",
    "/invocations?cursor={cursor}",
    "/invocations?status=failed",
    "/invocations?task={task}&status=concurrency_controlled",
    "/invocations?prefix={prefix}",
    "/fragments/invocations",
    "/invocations/{failed}",
    "/invocations/{waiting}",
    "/fragments/invocations/{waiting}",
    "/limits",
    "/fragments/limits",
    "/runners",
    "/fragments/runners",
    "/metrics",
    "/api/overview",
    "/api/invocations",
    "/api/invocations?status=failed",
    "/api/invocations/{failed}",
    "/api/limits",
    "/api/runners",
)
# What an open browser tab requests: its page's live fragment every 2 seconds.
TAB = ("/fragments/overview", 2.0)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def monitor_process(backend: str) -> Iterator[int]:
    """``taskgate monitor`` on ``monitor_store:app`` and a free port; the port once it accepts."""
    port = free_port()
    env = {
        **os.environ,
        "BENCH_MONITOR_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
    }
    command = [sys.executable, "-m", "taskgate", "monitor", "--app", "monitor_store:app"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the monitor exited: {process.communicate()[1]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise SystemExit("the monitor did not start listening")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.communicate(timeout=30)


def fetch(connection: http.client.HTTPConnection, path: str) -> tuple[int, int, float]:
    """GET ``path``: status, body size and milliseconds to the body's last byte."""
    start = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    return response.status, len(body), (time.perf_counter() - start) * 1000


def time_endpoints(port: int, paths: list[str], requests: int) -> list[dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    rows = []
    for path in paths:
        status, size, _ = fetch(connection, path)  # warm-up (templates, first reads)
        times = [fetch(connection, path)[2] for _ in range(requests)]
        rows.append(
            {
                "path": path,
                "status": status,
                "bytes": size,
                "p50": statistics.median(times),
                "p95": percentile(times, 0.95),
                "max": max(times),
            }
        )
    connection.close()
    return rows


def count_backend_calls(app: Any, paths: list[str], requests: int) -> dict[str, Any]:
    """Per path: the backend operations one request makes ({name: count}), and the median over
    ``requests`` requests of the time spent in them and in the whole request (ms), with the
    monitor app in this process (Starlette's TestClient)."""
    with warnings.catch_warnings():  # Starlette's note about httpx versions
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from taskgate.monitor import create_monitor_app

    backend = app.backend
    calls: Counter[str] = Counter()
    spent: dict[str, float] = defaultdict(float)
    originals: list[str] = []
    for name in dir(type(backend)):
        if name.startswith("_") or not callable(getattr(backend, name)) or name == "close":
            continue
        original = getattr(backend, name)
        originals.append(name)

        def counting(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return _original(*args, **kw)
            finally:
                spent[_name] += time.perf_counter() - start
                calls[_name] += 1

        setattr(backend, name, counting)
    per_path: dict[str, Any] = {}
    try:
        with TestClient(
            create_monitor_app(app, allowed_hosts=["testserver"]), client=("127.0.0.1", 50000)
        ) as client:
            for path in paths:
                # The warm-up (a cache filled once is not a per-view cost) must be answered.
                status = client.get(path).status_code
                if status != 200:
                    raise SystemExit(f"{path}: HTTP {status} from the in-process monitor")
                calls.clear()
                client.get(path)
                counts = dict(calls)
                backend_ms: list[float] = []
                total_ms: list[float] = []
                by_name: dict[str, list[float]] = {name: [] for name in counts}
                for _ in range(requests):
                    spent.clear()
                    start = time.perf_counter()
                    client.get(path)
                    total_ms.append((time.perf_counter() - start) * 1000)
                    backend_ms.append(sum(spent.values()) * 1000)
                    for name, times in by_name.items():
                        times.append(spent[name] * 1000)
                per_path[path] = {
                    "calls": counts,
                    "backend_ms": statistics.median(backend_ms),
                    "total_ms": statistics.median(total_ms),
                    "by_name_ms": {n: statistics.median(v) for n, v in by_name.items()},
                }
    finally:
        for name in originals:
            delattr(backend, name)
    return per_path


def throughput(app: Any, tasks: int, port: int | None, paths: list[str], every: float) -> float:
    """tasks/s of ``tasks`` no-op calls through a ThreadRunner; with ``port``, a poller
    requests ``paths`` every ``every`` seconds meanwhile (over one kept-alive connection)."""
    import monitor_store

    stop = threading.Event()

    def poll() -> None:
        assert port is not None
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            for path in paths:
                fetch(connection, path)
            stop.wait(every)
        connection.close()

    runner = app.runner
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    poller = threading.Thread(target=poll, daemon=True) if port else None
    if poller:
        poller.start()
    try:
        start = time.perf_counter()
        group = monitor_store.resize.parallelize([(n,) for n in range(tasks)])
        group.results  # noqa: B018 - waits for every result
        return tasks / (time.perf_counter() - start)
    finally:
        stop.set()
        runner.stop_runner_loop()
        thread.join(60)
        if poller:
            poller.join(60)


def bench_backend(kind: str, url: str, args: argparse.Namespace) -> None:
    os.environ["BENCH_MONITOR_BACKEND"] = url
    sys.path.insert(0, str(HERE))
    sys.modules.pop("monitor_store", None)
    import monitor_store

    app = monitor_store.app
    app.purge()
    start = time.perf_counter()
    monitor_store.fill_finished(args.finished, lambda n: None)
    holders = monitor_store.fill_waiting(args.waiting)
    monitor_store.announce(holders)
    filled = time.perf_counter() - start
    stats = app.backend.stats()
    total = sum(stats.by_task_and_status.values())
    print(f"\n## {kind}: {total:,} invocations stored in {filled:.0f} s", flush=True)
    # The monitor shares one stats() read for a second (taskgate/monitor/stats_cache.py), so
    # the requests below, 20 in a row, mostly reuse it: this is what the read itself costs,
    # paid at most once a second (an open tab refreshes every 2 s, so it always pays it).
    reads = []
    for _ in range(args.requests):
        began = time.perf_counter()
        app.backend.stats()
        reads.append((time.perf_counter() - began) * 1000)
    print(
        f"stats() read, uncached: p50 {statistics.median(reads):.1f} ms, "
        f"p95 {percentile(reads, 0.95):.1f} ms, max {max(reads):.1f} ms",
        flush=True,
    )

    failed = first(app, "failed")
    values = {
        "failed": failed,
        "waiting": first(app, "concurrency_controlled"),
        "task": monitor_store.ingest.task_id,
        "prefix": failed[:6],
        "cursor": quote(app.backend.page_invocations(limit=50).next_cursor or "", safe=""),
    }
    paths = [path.format(**values) for path in ENDPOINTS]
    with monitor_process(url) as port:
        rows = time_endpoints(port, paths, args.requests)
        print(f"\n{args.requests} requests each, after one warm-up (ms):\n")
        print("| endpoint | status | KiB | p50 | p95 | max |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            name = _short(row["path"], values)
            print(
                f"| `{name}` | {row['status']} | {row['bytes'] / 1024:.0f} | {row['p50']:.1f} "
                f"| {row['p95']:.1f} | {row['max']:.1f} |"
            )
        print(
            "\nBackend operations per request, and where the time goes (the monitor app in "
            f"this process, median of {args.requests} requests, ms):\n"
        )
        print("| endpoint | operations (ms each) | in the backend | whole request |")
        print("|---|---|---|---|")
        for path, row in count_backend_calls(app, paths, args.requests).items():
            text = ", ".join(
                f"{name}{f' x{n}' if n > 1 else ''} ({row['by_name_ms'][name]:.1f})"
                for name, n in sorted(row["calls"].items())
            )
            print(
                f"| `{_short(path, values)}` | {text or 'none'} | {row['backend_ms']:.1f} "
                f"| {row['total_ms']:.1f} |"
            )
        if args.tasks:
            # A pause in the fake runners' announcements would let their descriptions lapse
            # during a long run; re-announce before the runs.
            monitor_store.announce(holders)
            modes = {
                "no monitor": (None, [], 0.0),
                "an open overview tab (its fragment every 2 s)": (port, [TAB[0]], TAB[1]),
                f"every endpoint above once a second ({len(paths)} requests/s)": (
                    port,
                    paths,
                    1.0,
                ),
            }
            results: dict[str, list[float]] = {mode: [] for mode in modes}
            for _ in range(args.repeat):
                for mode, (target, polled, every) in modes.items():
                    results[mode].append(throughput(app, args.tasks, target, polled, every))
            print(
                f"\nRunner throughput: {args.tasks} no-op tasks through a ThreadRunner in this "
                f"process, {args.repeat} alternated runs per mode (tasks/s, median and runs):\n"
            )
            print("| while | tasks/s | runs |")
            print("|---|---|---|")
            for mode, rates in results.items():
                runs = ", ".join(f"{rate:.0f}" for rate in rates)
                print(f"| {mode} | {statistics.median(rates):.0f} | {runs} |", flush=True)
    app.purge()
    app.backend.close()
    sys.modules.pop("monitor_store", None)


def first(app: Any, status: str) -> str:
    """The id of the newest invocation in ``status`` (following the cursor: on Redis a page
    by status may come back short, after its scan bound)."""
    from taskgate import InvocationStatus

    cursor = None
    while True:
        page = app.backend.page_invocations(status=InvocationStatus(status), limit=1, cursor=cursor)
        if page.records:
            return str(page.records[0].invocation_id)
        if page.next_cursor is None:
            raise SystemExit(f"no {status} invocation in the store")
        cursor = page.next_cursor


def _short(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace(value, "{" + name + "}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--finished", type=int, default=100_000)
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for kind in args.backends.split(","):
        if kind == "sqlite":
            DB.parent.mkdir(exist_ok=True)
            for stale in DB.parent.glob(DB.name + "*"):
                stale.unlink()
            bench_backend(kind, f"sqlite:///{DB}", args)
        elif kind == "redis":
            from taskgate.testing import RedisServer

            with RedisServer() as server:
                bench_backend(kind, server.url, args)
        else:
            raise SystemExit(f"unknown backend {kind!r}: sqlite or redis")


if __name__ == "__main__":
    main()
