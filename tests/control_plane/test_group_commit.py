"""SQLite's group commit (``Store.group_write``): many threads' writes share transactions, each thread gets its
own result once its transaction is committed, a failing write fails only its own batch, and the lead passes on
to threads that arrived while a batch was being written. Real SQLite, real threads; events, not sleeps."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from operators.control_plane.db.models import TokenRow
from operators.control_plane.db.store import Store


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'cp.db'}")
    yield store
    store.close()


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


def test_a_failing_write_fails_its_batch_only_and_the_lead_passes_on(store):
    """The first writer's batch is held open until the others have queued behind it: the next batch, led by
    the oldest of them, holds the failing write and the writes that came with it; none of that batch is written
    and each of its threads gets the error; the first batch and a later write are written."""
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
    assert outcomes == {"first": "written", "bad": "failed", **{f"w{i}": "failed" for i in range(5)}}
    assert count(store) == 1
    store.group_write(lambda s: s.add(token("later")))
    assert count(store) == 2
