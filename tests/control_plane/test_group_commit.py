"""SQLite's group commit (``Store.group_write``): many threads' writes share transactions, each thread gets its
own result once its transaction is committed, a failing write fails only its own thread, and the lead passes on
to threads that arrived while a batch was being written, and a group commit goes before the background writes
waiting with it. Real SQLite, real threads; events, not sleeps."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from operators.control_plane.db import engine
from operators.control_plane.db.engine import DatabaseBusy
from operators.control_plane.db.models import TokenRow
from operators.control_plane.db.store import Store
from tests.waiting import wait_until


def token(name: str) -> TokenRow:
    return TokenRow(token_hash=name.ljust(64, "-"), subject=name, role="tenant", created_at=0.0)


def count(store: Store) -> int:
    with store.session() as s:
        return s.execute(select(func.count(TokenRow.token_hash))).scalar_one()


def run_threads(targets) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)


def test_threads_writing_at_once_each_get_their_own_result_once_committed(store):
    results: dict[int, object] = {}

    def write(i: int) -> None:
        def work(s):
            s.add(token(f"t{i}"))
            return i * 10

        results[i] = store.group_write(work)
        with store.session() as s:  # committed before it returned
            assert s.get(TokenRow, f"t{i}".ljust(64, "-")) is not None

    run_threads([lambda i=i: write(i) for i in range(40)])
    assert results == {i: i * 10 for i in range(40)} and count(store) == 40


def test_a_failing_write_fails_only_its_own_thread_and_the_lead_passes_on(store):
    """The first writer's batch is held open until the others have queued behind it: the next batch, led by
    the oldest of them, holds the failing write and the writes that came with it. Only the failing write's thread
    gets the error and nothing of it is written; the others' writes are (one company's bad write fails no one
    else's); a later write is written."""
    inside, release = threading.Event(), threading.Event()
    outcomes: dict[str, str] = {}

    def first(s):
        s.add(token("first"))
        inside.set()
        assert release.wait(30)

    def run(name: str, work) -> None:
        try:
            store.group_write(work)
            outcomes[name] = "written"
        except ZeroDivisionError:
            outcomes[name] = "failed"

    leader = threading.Thread(target=run, args=("first", first))
    leader.start()
    assert inside.wait(30)
    queued = [threading.Thread(target=run, args=(f"w{i}", lambda s, i=i: s.add(token(f"w{i}")))) for i in range(5)]
    queued.append(threading.Thread(target=run, args=("bad", lambda s: 1 / 0)))
    for t in queued:
        t.start()
    while len(store._group._pending) < len(queued):  # all six wait behind the open batch
        threading.Event().wait(0.001)
    release.set()
    leader.join(30)
    for t in queued:
        t.join(30)
    assert outcomes == {"first": "written", "bad": "failed", **{f"w{i}": "written" for i in range(5)}}
    assert count(store) == 6
    store.group_write(lambda s: s.add(token("later")))
    assert count(store) == 7


def test_each_write_in_a_batch_is_audited_as_the_token_that_made_it(store):
    """A batch runs on its leader's thread, but every admission, ledger entry and stop in it names the token of
    the request that made it (not the leader's, not none, which would read as the reconciler's enforcement):
    written through the ORM (its hooks) or as admission writes them (Core statements)."""
    from operators.control_plane import audit, audit_hooks
    from operators.control_plane.admission_writes import write_admission
    from operators.control_plane.audit import AuditKind
    from operators.control_plane.db.models import MoneyLedgerRow
    from tests.job_rows import add_rows, job_row as job

    audit_hooks.install(store)
    for i in range(3):
        add_rows(store, [job(f"job-s{i}", f"t{i}")])  # to be stopped below
    inside, release = threading.Event(), threading.Event()

    def leader(s):
        inside.set()
        assert release.wait(30)

    def as_actor(actor: str, write) -> None:
        with audit_hooks.acting(actor):
            write()

    first = threading.Thread(target=as_actor, args=("leader:default", lambda: store.group_write(leader)))
    first.start()
    assert inside.wait(30)
    writers = []
    for i in range(3):
        hold = MoneyLedgerRow(at=1.0, tenant=f"t{i}", job_id=f"job-a{i}", kind="hold", amount_krw=10, note="")
        writers.append(lambda i=i, hold=hold: add_rows(store, [job(f"job-a{i}", f"t{i}"), hold]))
        writers.append(lambda i=i: store.update_job(f"job-s{i}", stop_requested_at=2.0))
        core = MoneyLedgerRow(at=1.0, tenant=f"t{i}", job_id=f"job-w{i}", kind="hold", amount_krw=10, note="")
        writers.append(lambda i=i, hold=core: write_admission(store, job(f"job-w{i}", f"t{i}"), hold))
    threads = [threading.Thread(target=as_actor, args=(f"t{n // 3}:default", w)) for n, w in enumerate(writers)]
    for t in threads:
        t.start()
    while len(store._group._pending) < len(threads):  # all queued behind the open batch: one batch, one leader
        threading.Event().wait(0.001)
    release.set()
    for t in (first, *threads):
        t.join(30)

    named = {(e.kind, e.job_id): e.actor for e in audit.list_entries(store, limit=100) if e.job_id}
    for i in range(3):
        assert named[(AuditKind.JOB_ADMITTED, f"job-a{i}")] == f"t{i}:default"
        assert named[(AuditKind.LEDGER_HOLD, f"job-a{i}")] == f"t{i}:default"
        assert named[(AuditKind.JOB_STOPPED, f"job-s{i}")] == f"t{i}:default"
        assert named[(AuditKind.JOB_ADMITTED, f"job-w{i}")] == f"t{i}:default"
        assert named[(AuditKind.LEDGER_HOLD, f"job-w{i}")] == f"t{i}:default"
    with store.session() as s:
        assert {r.job_id: r.actor for r in s.query(MoneyLedgerRow)} == {
            f"job-{kind}{i}": f"t{i}:default" for i in range(3) for kind in "aw"
        }


def test_a_waiting_group_commit_writes_before_the_background_writes_waiting_with_it(store):
    """A background write (the sync's rounds) holds the writer; another background write, then a request's group
    commit, queue for it. When it is free the group commit goes first (a request waits behind at most the one
    background transaction already running), then the other background write: it is not lost or starved."""
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def running_background() -> None:
        with store.write_session() as s:
            s.add(token("running"))
            inside.set()
            assert release.wait(30)

    def waiting_background() -> None:
        with store.write_session() as s:
            order.append("background")
            s.add(token("background"))

    def request() -> None:
        store.group_write(lambda s: (order.append("request"), s.add(token("request"))))

    holder = threading.Thread(target=running_background)
    holder.start()
    assert inside.wait(30)
    later = [threading.Thread(target=waiting_background), threading.Thread(target=request)]
    try:
        for queued, thread in enumerate(later, start=1):
            thread.start()
            wait_until(lambda n=queued: store._writers.waiting == n, 30, f"{queued} writers queued")
    finally:
        release.set()
        for thread in [holder, *later]:
            thread.join(timeout=60)
    assert order == ["request", "background"] and count(store) == 3


def test_a_writer_that_never_gets_its_turn_gives_up_with_database_busy(store, monkeypatch):
    monkeypatch.setattr(engine, "DB_TIMEOUT_SECONDS", 0.2)
    inside, release = threading.Event(), threading.Event()

    def running_background() -> None:
        with store.write_session():
            inside.set()
            assert release.wait(30)

    holder = threading.Thread(target=running_background)
    holder.start()
    assert inside.wait(30)
    try:
        with pytest.raises(DatabaseBusy, match="stayed locked for 0.2 s"):
            store.group_write(lambda s: s.add(token("late")))
    finally:
        release.set()
        holder.join(timeout=60)
    assert count(store) == 0 and store._writers.waiting == 0


def test_a_write_holds_the_write_lock_from_its_start_with_no_engine_events(store):
    """The writer begins with ``BEGIN IMMEDIATE`` before its work runs a statement, sent as a statement: the engine
    carries no connection events (one makes SQLAlchemy dispatch events around every statement of every thread)."""
    import sqlite3

    other = sqlite3.connect(store.engine.url.database, timeout=0, isolation_level=None)
    seen: list[str] = []

    def work(_session) -> None:
        try:
            other.execute("BEGIN IMMEDIATE")
            seen.append("free")
            other.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            seen.append(str(exc))

    try:
        store.group_write(work)
        work(None)  # after the commit: free again
    finally:
        other.close()
    assert seen == ["database is locked", "free"]
    assert store.engine._has_events is False
