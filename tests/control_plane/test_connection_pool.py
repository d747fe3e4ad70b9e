"""The control plane's connection pool keeps the connections it opens: threads reading at once, as many as the API
and the control plane run, open a connection each the first time, and every later read reuses one (a pool smaller
than the threads closed each connection past it when given back, and the next read opened it again). Real SQLite
and PostgreSQL, real threads; a barrier, not sleeps."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, select

from operators.control_plane.db.engine import PG_POOL_CONNECTIONS, SQLITE_POOL_CONNECTIONS
from operators.control_plane.db.store import Store

ROUNDS = 3


def _connections_opened(store: Store, threads: int) -> int:
    """``threads`` threads each hold a read connection at the same moment, ``ROUNDS`` times; how many connections
    the pool opened meanwhile (any error of a thread fails the test)."""
    opened: list[int] = []
    event.listen(store.engine, "connect", lambda *_: opened.append(1))
    together = threading.Barrier(threads, timeout=30)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(ROUNDS):
                with store.read() as conn:
                    assert conn.execute(select(1)).scalar_one() == 1
                    together.wait()  # every thread holds its connection now
                together.wait()  # every connection is back before the next round
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            together.abort()

    workers = [threading.Thread(target=reader) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not any(worker.is_alive() for worker in workers)
    assert not errors, errors[0]
    return len(opened)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def pooled(request, tmp_path) -> tuple[Store, int]:
    """A store and how many threads read at once: the API's 40 and some (SQLite), or the cap (PostgreSQL)."""
    if request.param == "sqlite":
        store, threads = Store(f"sqlite:///{tmp_path / 'cp.db'}"), min(48, SQLITE_POOL_CONNECTIONS)
    else:
        store, threads = Store(request.getfixturevalue("postgres_url")), PG_POOL_CONNECTIONS - 4
    yield store, threads
    store.close()


def test_threads_reading_at_once_open_a_connection_each_once_and_reuse_it(pooled):
    store, threads = pooled
    assert _connections_opened(store, threads) <= threads
