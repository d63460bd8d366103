"""Where the WAL pages of an SQLite task go: frames appended per operation, by b-tree.

Every commit appends each page it changed to the WAL whole (bench/embedded.py counts them); this
names the table or index each of those pages belongs to (SQLite's ``dbstat`` table; page 1, the
file header, is rewritten when the file grows). Counts are exact and independent of the
machine: what a schema or statement change saves shows here before any timing does.

Operations, each repeated ``--ops`` times on one connection with automatic checkpoints off,
after ``--warm`` tasks registered and run (so the b-trees have interior pages, as in use):

- ``register``: one no-op call registered (``Backend.register``);
- ``finish_and_claim``: what a busy runner does between two tasks (finish one, claim the next);
- ``claim, finish``: the same as two transactions (an idle runner's claim, then its finish).

    .venv/bin/python bench/sqlite_pages.py [--ops 200] [--warm 2000]
"""

from __future__ import annotations

import argparse
import collections
import sqlite3
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from taskgate.backends.base import BackendOptions
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.record import ConcurrencyPlan, InvocationRecord, Outcome, OutcomeKind

DONE = Outcome(OutcomeKind.SUCCESS, b"\x80\x04K\x00.")  # a pickled 0, as a no-op returns
ARGUMENTS = b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00)}\x94\x86\x94."  # pickled ((), {})
RUNNER = "bench-runner"
WAL_HEADER, FRAME_HEADER = 32, 24


class Store:
    """A scratch SQLite store and the WAL of its one write connection."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "pages.db"
        self.backend = SqliteBackend(self.path, BackendOptions("bench", 3600.0, 3, b"lost"))
        self.calls = 0

    def register(self, count: int) -> None:
        for _ in range(count):
            self.calls += 1
            record = InvocationRecord(
                f"bench-{self.calls:012d}", "bench.tasks.no_op", ARGUMENTS, ConcurrencyPlan()
            )
            self.backend.register(record)

    def run(self, count: int) -> None:
        """``count`` claim-and-finish transactions, as a busy runner makes them."""
        [claim] = self.backend.claim(RUNNER, 1, 60.0, 0.0)
        for _ in range(count):
            _, claims = self.backend.finish_and_claim(
                claim.invocation_id, RUNNER, claim.attempt, DONE, max_count=1, lease_seconds=60.0
            )
            claim = claims[0]
        self.backend.finish(claim.invocation_id, RUNNER, claim.attempt, DONE)

    def claim_then_finish(self, count: int) -> None:
        for _ in range(count):
            [claim] = self.backend.claim(RUNNER, 1, 60.0, 0.0)
            self.backend.finish(claim.invocation_id, RUNNER, claim.attempt, DONE)

    def stop_checkpoints(self) -> None:
        """Empty the WAL and stop SQLite copying it back: from here it only grows."""
        conn = self.backend._db._write_connection()
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def frames(self) -> list[int]:
        """The page number of every frame in the WAL, oldest first."""
        wal = Path(f"{self.path}-wal")
        data = wal.read_bytes() if wal.exists() else b""
        if len(data) < WAL_HEADER:
            return []
        frame = struct.unpack(">I", data[8:12])[0] + FRAME_HEADER
        return [
            struct.unpack(">I", data[offset : offset + 4])[0]
            for offset in range(WAL_HEADER, len(data) - frame + 1, frame)
        ]

    def owners(self) -> dict[int, str]:
        """Each page's b-tree (its table or index), read by a connection of its own."""
        conn = sqlite3.connect(self.path)
        try:
            return dict(conn.execute("SELECT pageno, name FROM dbstat").fetchall())
        except sqlite3.OperationalError as exc:
            raise SystemExit(f"this SQLite lacks the dbstat table ({exc})") from exc
        finally:
            conn.close()


def measure(store: Store, operation: Callable[[int], None], ops: int) -> dict[str, float]:
    """Frames ``ops`` runs of ``operation`` append, per run, by b-tree (most first)."""
    before = len(store.frames())
    operation(ops)
    owners = store.owners()
    written = collections.Counter(
        "(file header)" if page == 1 else owners.get(page, "(free pages)")
        for page in store.frames()[before:]
    )
    return {name: count / ops for name, count in written.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description="WAL frames per operation, by b-tree")
    parser.add_argument("--ops", type=int, default=200, help="runs of each operation")
    parser.add_argument("--warm", type=int, default=2000, help="tasks run before measuring")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store = Store(Path(directory))
        try:
            store.register(args.warm + 2 * args.ops + 1)
            store.run(args.warm)
            store.stop_checkpoints()
            rows = {
                "register": measure(store, store.register, args.ops),
                "finish_and_claim": measure(store, store.run, args.ops),
                "claim, finish": measure(store, store.claim_then_finish, args.ops),
            }
        finally:
            store.backend.close()
    for operation, by_tree in rows.items():
        print(f"{operation}: {sum(by_tree.values()):.2f} WAL frames per operation")
        for name, frames in by_tree.items():
            print(f"    {name:34s} {frames:5.2f}")


if __name__ == "__main__":
    main()
