"""How fast the web monitor answers on a big store, and what it costs the runners.

For each backend (``--backends sqlite,redis``):

1. Fill a fresh store (``bench/monitor_store.py``): ``--finished`` final invocations (one in
   twenty FAILED with a traceback) and ``--waiting`` invocations parked behind 100 held
   tenant slots, with four live runner descriptions.
2. Start ``taskgate monitor`` (a real uvicorn process) on a free loopback port, request every
   page, every ``/api/`` endpoint and ``/metrics`` once to warm up, then ``--requests`` times
   each, one at a time, over one kept-alive ``http.client`` connection: p50, p95 and max of
   the time to the last byte of the body, in ms.
3. Count the backend operations each endpoint makes (the monitor app built in this process
   on a backend whose methods count their calls): what one open monitor adds to the store,
   since runners share nothing else with it.
4. Runner throughput with and without a monitor polling: ``--tasks`` no-op calls run by a
   ThreadRunner in this process, while a thread requests every page once a second (as an
   open browser tab does), alternated ``--repeat`` times; tasks/s, medians.

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
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DB = HERE.parent / ".taskgate" / "bench-monitor.db"

# The endpoints a person (pages) or a script (/api/, /metrics) requests; {failed} and {waiting}
# are an invocation id of each kind, {task} a task id, {prefix} the first characters of an id.
ENDPOINTS = (
    "/",
    "/invocations",
    "/invocations?status=failed",
    "/invocations?task={task}&status=concurrency_controlled",
    "/invocations?q={prefix}",
    "/invocations/{failed}",
    "/invocations/{waiting}",
    "/limits",
    "/runners",
    "/metrics",
    "/api/overview",
    "/api/invocations",
    "/api/invocations?status=failed",
    "/api/invocations/{failed}",
    "/api/limits",
    "/api/runners",
)


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


def count_backend_calls(app: Any, paths: list[str]) -> dict[str, Counter[str]]:
    """The backend operations each path makes, by method name (one request each)."""
    from starlette.testclient import TestClient
    from taskgate.monitor import create_monitor_app

    backend = app.backend
    calls: Counter[str] = Counter()
    originals: dict[str, Callable[..., Any]] = {}
    for name in dir(type(backend)):
        if name.startswith("_") or not callable(getattr(backend, name)) or name == "close":
            continue
        original = getattr(backend, name)
        originals[name] = original

        def counting(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kw)

        setattr(backend, name, counting)
    per_path: dict[str, Counter[str]] = {}
    try:
        with TestClient(create_monitor_app(app)) as client:
            for path in paths:
                client.get(path)  # warm-up: a cache filled once is not a per-view cost
                calls.clear()
                client.get(path)
                per_path[path] = Counter(calls)
    finally:
        for name in originals:
            delattr(backend, name)
    return per_path


def throughput(app: Any, tasks: int, port: int | None, paths: list[str]) -> float:
    """tasks/s of ``tasks`` no-op calls through a ThreadRunner; with ``port``, a poller
    requests every path once a second meanwhile."""
    import monitor_store

    stop = threading.Event()

    def poll() -> None:
        assert port is not None
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            for path in paths:
                fetch(connection, path)
            stop.wait(1.0)
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

    failed = app.backend.page_invocations(status=_status("failed"), limit=1).records[0]
    waiting = app.backend.page_invocations(status=_status("concurrency_controlled"), limit=1)
    values = {
        "failed": failed.invocation_id,
        "waiting": waiting.records[0].invocation_id,
        "task": monitor_store.ingest.task_id,
        "prefix": failed.invocation_id[:6],
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
        print("\nBackend operations per request:\n")
        print("| endpoint | operations |")
        print("|---|---|")
        for path, counter in count_backend_calls(app, paths).items():
            text = ", ".join(f"{name} x{n}" for name, n in sorted(counter.items()))
            print(f"| `{_short(path, values)}` | {text or 'none'} |")
        if args.tasks:
            # A pause in the fake runners' announcements would let their descriptions lapse
            # during a long run; re-announce before the runs.
            monitor_store.announce(holders)
            results: dict[str, list[float]] = {"without": [], "with": []}
            for _ in range(args.repeat):
                results["without"].append(throughput(app, args.tasks, None, paths))
                results["with"].append(throughput(app, args.tasks, port, paths))
            print(
                f"\nRunner throughput ({args.tasks} no-op tasks, ThreadRunner, "
                f"{args.repeat} alternated runs, median tasks/s): without a monitor "
                f"{statistics.median(results['without']):.0f} "
                f"({', '.join(f'{r:.0f}' for r in results['without'])}), with a monitor "
                f"polling every page each second {statistics.median(results['with']):.0f} "
                f"({', '.join(f'{r:.0f}' for r in results['with'])})",
                flush=True,
            )
    app.purge()
    app.backend.close()
    sys.modules.pop("monitor_store", None)


def _status(value: str) -> Any:
    from taskgate import InvocationStatus

    return InvocationStatus(value)


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
