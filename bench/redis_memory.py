"""Redis memory per invocation, queued and finished. Prints figures; never asserts.

A private redis-server (taskgate.testing.RedisServer; ``--binary`` picks one). ``--tasks``
no-ops are registered with no runner (queued), then a ThreadRunner runs them all and nobody
waits for their results (finished, kept with the result as by default). For each state it
prints the growth of ``INFO memory`` ``used_memory`` per invocation and ``MEMORY USAGE`` of
every key by kind (``inv``, ``task``, ``queue``, ``expiry``...), per invocation, with the
encoding of one record. Deterministic enough to compare branches on a busy machine. The
growth includes the connections' buffers (MEMORY STATS ``clients.normal``, printed), which do
not grow with the invocations: use 5,000 tasks or more, or they dominate.

    .venv/bin/python bench/redis_memory.py [--tasks 5000] [--binary /usr/bin/redis-server]
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
from typing import cast

import redis

from taskgate import App
from taskgate.testing import RedisServer

APP_ID = "memprobe"
WAIT_SECONDS = 120.0


def by_kind(client: redis.Redis, tasks: int) -> None:
    """MEMORY USAGE of every key, summed per kind, per invocation."""
    sizes: dict[str, list[int]] = collections.defaultdict(list)
    for key in client.scan_iter(count=1000):
        name = key.decode()
        kind = name.split(":")[2] if name.count(":") >= 2 else name
        sizes[kind].append(client.memory_usage(key, samples=0) or 0)
    for kind, values in sorted(sizes.items(), key=lambda item: -sum(item[1])):
        print(f"  {kind:<14}{len(values):>7} keys{sum(values) / tasks:>9.1f} B/invocation")
    one = next(client.scan_iter(match="*inv:*"))
    print(f"  one record: {client.object('encoding', one)!r} {client.hgetall(one)!r}")


def stats(client: redis.Redis) -> dict[str, int]:
    """The integer figures of MEMORY STATS (overhead by kind, dataset...)."""
    return {str(k): v for k, v in client.memory_stats().items() if isinstance(v, int)}


def print_growth(before: dict[str, int], after: dict[str, int], tasks: int) -> None:
    """The MEMORY STATS figures that grew by more than a byte per invocation."""
    for name, value in after.items():
        growth = (value - before.get(name, 0)) / tasks
        if abs(growth) >= 1 and name not in ("peak.allocated", "total.allocated"):
            print(f"  stats {name:<28}{growth:>9.1f} B/invocation")


def successes(client: redis.Redis, counts: str) -> int:
    """The invocations counted 'success' in the app's ``counts`` hash (every task's)."""
    fields = cast(dict[bytes, bytes], client.hgetall(counts))
    return sum(int(value) for field, value in fields.items() if field.endswith(b"\x1fsuccess"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--binary", default=None)
    args = parser.parse_args()
    with RedisServer(args.binary) as server:
        app = App(APP_ID, backend=server.url)

        @app.task
        def noop(x: int) -> int:
            return x

        client = redis.Redis.from_url(server.url)
        print("server", client.info("server")["redis_version"])
        noop(0)  # loads the scripts, creates the keys that exist whatever the number
        base = int(client.info("memory")["used_memory"])
        base_stats = stats(client)
        for i in range(1, args.tasks + 1):
            noop(i)
        queued = int(client.info("memory")["used_memory"])
        print(f"queued: {(queued - base) / args.tasks:.1f} B/invocation (used_memory)")
        by_kind(client, args.tasks)
        print_growth(base_stats, stats(client), args.tasks)
        thread = threading.Thread(target=app.runner.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + WAIT_SECONDS
        counts = app.backend._prefix + "counts"  # type: ignore[attr-defined]
        while time.monotonic() < deadline:
            if successes(client, counts) == args.tasks + 1:
                break
            time.sleep(0.2)
        app.runner.stop_runner_loop()
        thread.join(WAIT_SECONDS)
        client.delete(app.backend._prefix + "rinfo")  # type: ignore[attr-defined]
        finished = int(client.info("memory")["used_memory"])
        print(f"finished: {(finished - base) / args.tasks:.1f} B/invocation (used_memory)")
        by_kind(client, args.tasks)
        print_growth(base_stats, stats(client), args.tasks)


if __name__ == "__main__":
    main()
