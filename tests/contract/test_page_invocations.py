"""``Backend.page_invocations``: filtered pages, newest first, with cursors that neither skip nor
repeat, and a bounded scan (``scanned_all=False``) on every backend."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest

from taskgate import App
from taskgate.backends import base
from taskgate.backends.base import Backend
from taskgate.backends.redis import pages as redis_pages
from taskgate.backends.redis.backend import RedisBackend
from taskgate.backends.sqlite.backend import SqliteBackend
from taskgate.errors import InvalidCursorError
from taskgate.record import InvocationPage, InvocationRecord, Outcome, OutcomeKind
from taskgate.status import InvocationStatus as S

NewRecord = Callable[..., InvocationRecord]

TASKS = ("tests.a", "tests.b", "tests.c")


def store(backend: Backend, new_record: NewRecord, count: int, prefix: str = "") -> list[str]:
    """Register ``count`` invocations, task a/b/c in turn, one second apart; returns their ids
    oldest first."""
    ids = []
    for i in range(count):
        record = new_record(task_id=TASKS[i % 3], created_at=1_000_000.0 + i)
        record = dataclasses.replace(
            record, invocation_id=f"{prefix}{i:04d}-{record.invocation_id}"
        )
        backend.register(record)
        ids.append(record.invocation_id)
    return ids


def all_pages(
    backend: Backend, limit: int, cursor: str | None = None, **filters: object
) -> list[InvocationPage]:
    """Every page from ``cursor`` (None: the newest) on."""
    pages = [backend.page_invocations(limit=limit, cursor=cursor, **filters)]  # type: ignore[arg-type]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 1000, "paging does not end"
        cursor = pages[-1].next_cursor
        pages.append(backend.page_invocations(limit=limit, cursor=cursor, **filters))  # type: ignore[arg-type]
    return pages


def page_ids(pages: list[InvocationPage]) -> list[str]:
    return [record.invocation_id for page in pages for record in page.records]


def test_pages_walk_every_invocation_newest_first_without_gaps_or_repeats(
    backend: Backend, new_record: NewRecord
) -> None:
    ids = store(backend, new_record, 230)
    pages = all_pages(backend, 50)
    assert page_ids(pages) == ids[::-1]
    assert [len(p.records) for p in pages] == [50, 50, 50, 50, 30]
    assert all(p.scanned_all for p in pages)
    assert all(p.records[0].history == [] for p in pages)  # records come without history


def test_a_task_filter_pages_through_that_tasks_invocations(
    backend: Backend, new_record: NewRecord
) -> None:
    ids = store(backend, new_record, 120)
    pages = all_pages(backend, 7, task_id="tests.b")
    assert page_ids(pages) == ids[1::3][::-1]
    assert {r.task_id for p in pages for r in p.records} == {"tests.b"}


def test_status_and_task_filters_combine(backend: Backend, new_record: NewRecord) -> None:
    ids = store(backend, new_record, 60)
    claims = backend.claim("runner", 9, 30.0, 0)  # the 9 oldest: 3 of each task
    claimed = [c.invocation_id for c in claims]
    assert claimed == ids[:9]
    for claim in claims[:4]:
        kind = OutcomeKind.SUCCESS if claim.invocation_id != ids[1] else OutcomeKind.FAILED
        backend.finish(claim.invocation_id, "runner", claim.attempt, Outcome(kind, b"x"))
    running = all_pages(backend, 2, status=S.RUNNING)
    assert page_ids(running) == ids[4:9][::-1]
    assert page_ids(all_pages(backend, 2, status=S.SUCCESS)) == [ids[3], ids[2], ids[0]]
    assert page_ids(all_pages(backend, 2, status=S.RUNNING, task_id="tests.b")) == [ids[7], ids[4]]
    assert page_ids(all_pages(backend, 5, status=S.FAILED, task_id="tests.b")) == [ids[1]]
    assert page_ids(all_pages(backend, 5, status=S.FAILED, task_id="tests.a")) == []
    [failed] = backend.page_invocations(status=S.FAILED).records
    assert failed.status is S.FAILED and failed.error == b"x"


def test_an_id_prefix_filters_literally_and_combines(
    backend: Backend, new_record: NewRecord
) -> None:
    ids = store(backend, new_record, 30, prefix="x*")
    more = store(backend, new_record, 30, prefix="y_")
    assert page_ids(all_pages(backend, 4, id_prefix="x*")) == ids[::-1]
    assert page_ids(all_pages(backend, 4, id_prefix="y_001")) == more[10:20][::-1]
    assert page_ids(all_pages(backend, 4, id_prefix="y_001", task_id="tests.a")) == [
        more[18],
        more[15],
        more[12],
    ]
    assert page_ids(all_pages(backend, 4, id_prefix="x")) == ids[::-1]
    assert page_ids(all_pages(backend, 4, id_prefix="y%")) == []
    assert page_ids(all_pages(backend, 4, id_prefix="Y_")) == []  # exact, case included


def test_a_bounded_scan_returns_short_pages_that_go_on_without_gaps(
    backend: Backend, new_record: NewRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = store(backend, new_record, 90)
    rare = [ids[5], ids[77]]
    claims = backend.claim("runner", 78, 30.0, 0)
    for claim in claims:
        if claim.invocation_id not in rare:
            backend.release(claim.invocation_id, "runner", claim.attempt)
    monkeypatch.setattr(base, "PAGE_SCAN_MAX", 10)
    pages = all_pages(backend, 5, status=S.RUNNING)
    # Whether a backend filters status by an index (full pages) or by scanning (short pages
    # with scanned_all=False), paging finds each rare invocation once, newest first.
    assert page_ids(pages) == [ids[77], ids[5]]
    for page in pages:
        assert page.scanned_all or page.next_cursor is not None
    if isinstance(backend, SqliteBackend):  # a status index: one exact page
        assert len(pages) == 1 and pages[0].scanned_all
    else:  # 90 entries, 10 examined a page: short pages that say so (the ninth stops at the
        # bound on the last entry, so an empty tenth page is needed to know it is the end)
        assert [p.scanned_all for p in pages] == [False] * 9 + [True]
        assert [len(p.records) for p in pages] == [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    # Two filters scan on every backend (SQLite walks the status index, checks the task).
    assert page_ids(all_pages(backend, 5, status=S.RUNNING, task_id="tests.c")) == rare[::-1]
    assert page_ids(all_pages(backend, 5, status=S.RUNNING, task_id="tests.a")) == []
    prefixed = all_pages(backend, 5, id_prefix=ids[40][:6], task_id="tests.b")
    assert page_ids(prefixed) == [ids[40]]
    # A prefix that more ids match than a page examines (SQLite then walks the rowid).
    assert page_ids(all_pages(backend, 5, id_prefix="00")) == ids[::-1]


def test_pages_never_show_another_apps_invocations(
    backend: Backend, make_app: Callable[..., App], new_record: NewRecord
) -> None:
    ids = store(backend, new_record, 5)
    other = make_app().backend
    store(other, new_record, 5)
    assert page_ids(all_pages(backend, 2)) == ids[::-1]
    assert page_ids(all_pages(backend, 2, task_id="tests.a")) == [ids[3], ids[0]]


def test_an_empty_store_has_one_empty_page(backend: Backend) -> None:
    page = backend.page_invocations()
    assert page.records == [] and page.next_cursor is None and page.scanned_all


def test_invocations_registered_at_the_same_instant_are_paged_once_each(
    backend: Backend, new_record: NewRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = []
    for i in range(40):  # one timestamp for all: stores that order by time break the tie
        record = new_record(task_id=TASKS[i % 3], created_at=2_000_000.0)
        backend.register(record)
        ids.append(record.invocation_id)
    pages = all_pages(backend, 3)
    assert sorted(page_ids(pages)) == sorted(ids) and len(page_ids(pages)) == 40
    monkeypatch.setattr(base, "PAGE_SCAN_MAX", 4)
    filtered = all_pages(backend, 2, task_id="tests.a", id_prefix="inv-")
    assert sorted(page_ids(filtered)) == sorted(ids[0::3])
    assert len(page_ids(filtered)) == len(ids[0::3])


def test_a_cursor_goes_on_after_its_invocation_expired(
    backend: Backend, new_record: NewRecord
) -> None:
    ids = store(backend, new_record, 10)
    first = backend.page_invocations(limit=4)
    assert [r.invocation_id for r in first.records] == ids[9:5:-1]
    claims = {c.invocation_id: c for c in backend.claim("runner", 10, 30.0, 0)}
    done = Outcome(OutcomeKind.SUCCESS, b"ok")
    assert backend.finish(ids[6], "runner", claims[ids[6]].attempt, done)
    assert backend.expire_finals(100, now=time.time() + 10**9) == 1
    assert backend.get(ids[6]) is None
    second = backend.page_invocations(limit=4, cursor=first.next_cursor)
    assert [r.invocation_id for r in second.records] == ids[5:1:-1]


@pytest.mark.parametrize(
    "cursor",
    # Forged ones too: out of range for a SQLite integer, not finite for a score or a time.
    ["", "nonsense", "12x", "1.5", "99999999999999999999999", "-1", "nan x", "1e999 x", "-inf x"],
)
def test_a_cursor_this_backend_never_returned_is_refused(
    backend: Backend, new_record: NewRecord, cursor: str
) -> None:
    store(backend, new_record, 3)
    with pytest.raises(InvalidCursorError, match="not one this backend returned"):
        backend.page_invocations(cursor=cursor)


def test_a_cursor_goes_on_after_its_invocation_expired_among_same_instant_ones(
    backend: Backend, new_record: NewRecord
) -> None:
    ids = []
    for _ in range(6):  # one timestamp: only the store's own order tells them apart
        record = new_record(created_at=3_000_000.0)
        backend.register(record)
        ids.append(record.invocation_id)
    first = backend.page_invocations(limit=2)
    shown = [r.invocation_id for r in first.records]
    claims = {c.invocation_id: c for c in backend.claim("runner", 6, 30.0, 0)}
    done = Outcome(OutcomeKind.SUCCESS, b"ok")
    assert backend.finish(shown[-1], "runner", claims[shown[-1]].attempt, done)
    assert backend.expire_finals(100, now=time.time() + 10**9) == 1
    rest = all_pages(backend, 2, cursor=first.next_cursor)
    assert sorted(shown + page_ids(rest)) == sorted(ids)
    assert len(page_ids(rest)) == 4


@pytest.mark.parametrize("backend_url", ["redis"], indirect=True)  # pages read in chunks
@pytest.mark.parametrize("change", ["register", "expire"])
def test_a_redis_page_read_in_chunks_neither_repeats_nor_skips_while_the_store_changes(
    backend: Backend, new_record: NewRecord, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    assert isinstance(backend, RedisBackend)
    ids = store(backend, new_record, 20)
    claims = {c.invocation_id: c for c in backend.claim("runner", 20, 30.0, 0)}
    done = Outcome(OutcomeKind.SUCCESS, b"ok")
    for invocation_id in ids[-4:]:  # the newest four: the first chunk's
        assert backend.finish(invocation_id, "runner", claims[invocation_id].attempt, done)
    monkeypatch.setattr(redis_pages, "CHUNK", 5)
    db = backend._db
    real_run = db.run
    chunks = 0

    def run(script: str, *args: object) -> object:
        nonlocal chunks
        reply = real_run(script, *args)
        chunks += script == "page_chunk"
        if script == "page_chunk" and chunks == 1:  # between the first chunk and the second
            if change == "register":  # newer entries above the chunk read
                for _ in range(3):
                    backend.register(new_record(created_at=time.time()))
            else:  # entries the first chunk read disappear
                assert backend.expire_finals(100, now=time.time() + 10**9) == 4
        return reply

    monkeypatch.setattr(db, "run", run)
    page = backend.page_invocations(id_prefix="0", limit=50)  # a filter: read in chunks
    assert chunks > 1
    expected = ids[::-1] if change == "register" else ids[-5::-1]  # expired: no records
    assert [r.invocation_id for r in page.records] == expected


def test_a_page_of_a_small_app_beside_a_bigger_one_is_exact(
    backend: Backend,
    make_app: Callable[..., App],
    new_record: NewRecord,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = store(backend, new_record, 3)
    other = make_app().backend
    store(other, new_record, 40)  # newer than ours; SQLite keeps them in the same table
    monkeypatch.setattr(base, "PAGE_SCAN_MAX", 10)
    pages = all_pages(backend, 5)
    assert page_ids(pages) == ids[::-1]
    assert len(pages) == 1 and pages[0].scanned_all  # exact, without reading all 40
    prefixed = all_pages(backend, 5, id_prefix="000")
    assert page_ids(prefixed) == ids[::-1]


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("filters", [{}, {"id_prefix": "0"}, {"id_prefix": "00"}])
def test_sqlite_page_reads_sort_no_rows(
    backend: Backend, new_record: NewRecord, filters: dict[str, str]
) -> None:
    """Reading a page never sorts the rows it matched (a temp B-tree grows with the store):
    each statement a page runs reads an index, or the rowid, in the page's order."""
    assert isinstance(backend, SqliteBackend)
    store(backend, new_record, 30)
    conn = backend._db.connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        backend.page_invocations(limit=5, **filters)  # type: ignore[arg-type]
    finally:
        conn.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert selects
    for sql in selects:
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "TEMP B-TREE" not in plan, (sql, plan)
        assert "SCAN invocations" not in plan, (sql, plan)


def _sqlite_steps(backend: SqliteBackend, read: Callable[[], object]) -> int:
    """SQLite VM instructions (in thousands) that ``read`` runs: grows with the rows it reads."""
    conn = backend._db.connection()
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1000)
    try:
        read()
    finally:
        conn.set_progress_handler(None, 0)
    return steps


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)  # apps share its tables
def test_sqlite_reads_of_a_small_app_do_not_grow_with_another_apps_rows(
    backend: Backend, make_app: Callable[..., App], new_record: NewRecord
) -> None:
    assert isinstance(backend, SqliteBackend)
    ids = store(backend, new_record, 3)
    other = make_app().backend
    steps: dict[str, list[int]] = {"page": [], "list": []}
    for _ in range(2):
        other.register_many([new_record(task_id="tests.big") for _ in range(3000)])
        steps["page"].append(_sqlite_steps(backend, lambda: backend.page_invocations(limit=5)))
        listed = _sqlite_steps(backend, lambda: backend.list_invocations(None, None, 5))
        steps["list"].append(listed)
    assert [r.invocation_id for r in backend.list_invocations(None, None, 5)] == ids[::-1]
    # 3000 more rows of the other app cost the reads nothing more (bounded, not a scan).
    assert steps["page"][1] == steps["page"][0], steps
    assert steps["list"][1] == steps["list"][0], steps


@pytest.mark.parametrize("backend_url", ["redis"], indirect=True)  # a zset per task, merged
@pytest.mark.parametrize("filters", [{}, {"status": S.FAILED}])
def test_a_redis_page_of_many_tasks_reads_about_a_chunk_per_round_trip(
    backend: Backend,
    new_record: NewRecord,
    monkeypatch: pytest.MonkeyPatch,
    filters: dict[str, object],
) -> None:
    # A page of every task merges the tasks' zsets: reading a whole chunk of each at once
    # would hold the server for all of them (a status lookup per entry).
    assert isinstance(backend, RedisBackend)
    tasks = 40
    records = [
        new_record(task_id=f"tests.t{i % tasks}", created_at=1_000_000.0 + i)
        for i in range(tasks * 12)
    ]
    backend.register_many(records)
    monkeypatch.setattr(redis_pages, "CHUNK", 50)
    db = backend._db
    real_run = db.run
    read: list[int] = []

    def run(script: str, *args: object) -> object:
        reply = real_run(script, *args)
        if script == "page_chunk":
            read.append(sum(len(entries) for entries in reply) // (3 if filters else 2))
        return reply

    monkeypatch.setattr(db, "run", run)
    limit = 30
    pages = all_pages(backend, limit, **filters)
    expected = [] if filters else [r.invocation_id for r in records[::-1]]
    assert page_ids(pages) == expected
    chunk = 50 if filters else limit + 1
    assert max(read) <= chunk + tasks  # not 40 zsets x a chunk


def entry_of(backend: Backend, record: InvocationRecord) -> tuple[int, int]:
    """The Redis index entry id of ``record`` (its 'x': see index_entry in lib_core.lua)."""
    assert isinstance(backend, RedisBackend)
    x = backend._command("HGET", backend._prefix + "inv:" + record.invocation_id, "x").decode()
    ms, _, n = x.partition("-")
    return int(ms), int(n or 0)


@pytest.mark.parametrize("backend_url", ["redis"], indirect=True)  # indexes merged, in chunks
@pytest.mark.parametrize("filters", [{}, {"status": S.SUCCESS}, {"id_prefix": "b"}])
def test_a_redis_page_of_many_tasks_pages_ties_across_tasks_once_each(
    backend: Backend,
    new_record: NewRecord,
    monkeypatch: pytest.MonkeyPatch,
    filters: dict[str, object],
) -> None:
    # Few times over five tasks' indexes, chunks of 3, pages of at most 7 entries examined:
    # ties fall across chunk, page and index boundaries. (An index dates a call whose time is
    # not above its last entry's after that entry: "<micros>-<n>", n counting up; two tasks'
    # indexes hold the same entry ids, which order by invocation id.)
    records = [
        dataclasses.replace(
            new_record(task_id=f"tests.t{i * 7 % 5}", created_at=1_000_000.0 + i % 4),
            invocation_id=f"{'ab'[i % 2]}{i * 13 % 40:02d}",
        )
        for i in range(40)
    ]
    backend.register_many(records)
    for claim in backend.claim("runner", 15, 30.0, 0):
        backend.finish(
            claim.invocation_id, "runner", claim.attempt, Outcome(OutcomeKind.SUCCESS, b"ok")
        )
    statuses = {r.invocation_id: r.status for r in backend.list_invocations(None, None, 100)}
    monkeypatch.setattr(redis_pages, "CHUNK", 3)
    monkeypatch.setattr(base, "PAGE_SCAN_MAX", 7)
    newest_first = sorted(records, key=lambda r: (entry_of(backend, r), r.invocation_id))[::-1]
    expected = [
        r.invocation_id
        for r in newest_first
        if statuses[r.invocation_id] is filters.get("status", statuses[r.invocation_id])
        and r.invocation_id.startswith(str(filters.get("id_prefix", "")))
    ]
    for limit in (1, 4, 50):
        assert page_ids(all_pages(backend, limit, **filters)) == expected
