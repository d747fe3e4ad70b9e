"""The reconciler lease and the tenant lock, on SQLite and PostgreSQL, without processes."""

from __future__ import annotations

import threading
import time

import pytest

from operators.control_plane.db.lease import Lease
from operators.control_plane.db.models import LeaseRow
from operators.control_plane.db.store import Store
from tests.clock import ManualClock


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'cp.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store(url)
    yield store
    store.close()


def test_one_holder_at_a_time_and_a_lapsed_lease_is_taken_over(store):
    clock = ManualClock()
    first, second = (
        Lease(store, "reconciler", ttl=0.6, renew_every=0.2, holder=name, clock=clock) for name in ("a", "b")
    )
    assert first.renew() and not second.renew()
    taken = first.acquired_at
    clock.advance(0.3)
    assert first.renew() and first.acquired_at == taken  # a renewal, not a new term
    assert not second.renew()
    clock.advance(0.3)
    assert first.holding  # renewed 0.3 s ago: it acts until ttl - renew_every after that
    clock.advance(0.7)  # `first` died: it renews no more, and its lease lapses
    assert not first.holding
    assert second.renew()
    assert not first.renew()  # back from a pause: it has lost the lease and knows it
    with store.session() as s:
        assert s.get(LeaseRow, "reconciler").holder == "b"


def test_a_released_lease_is_free_at_once(store):
    first, second = (Lease(store, "reconciler", ttl=30, renew_every=10, holder=name) for name in ("a", "b"))
    first.start()
    assert first.holding and not second.renew()
    first.release()
    assert not first.holding and second.renew()


def test_lease_settings_must_leave_time_to_renew(store):
    with pytest.raises(ValueError, match="renew_every"):
        Lease(store, "reconciler", ttl=1.0, renew_every=1.0)


def test_the_tenant_lock_serialises_sections_and_joins_their_writes(store):
    """Two threads (as two replicas would) enter one tenant's section: one at a time, and the
    store calls inside each section commit with it."""
    from operators.control_plane.auth import hash_token

    inside, overlaps = [], []

    def section(n: int) -> None:
        with store.tenant_lock("acme"):
            inside.append(n)
            if len(inside) > 1:
                overlaps.append(tuple(inside))
            store.put_token(hash_token(f"t{n}"), f"subject-{n}", "tenant")
            time.sleep(0.2)
            inside.remove(n)

    threads = [threading.Thread(target=section, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not overlaps
    assert {f"subject-{n}" for n in range(3)} <= store.token_subjects()
    with pytest.raises(RuntimeError):
        with store.tenant_lock("acme"):
            store.put_token(hash_token("rolled-back"), "subject-x", "tenant")
            raise RuntimeError("the section fails")
    assert "subject-x" not in store.token_subjects()


def test_on_sqlite_a_restarted_process_takes_the_lease_its_crashed_run_left(tmp_path):
    """Local mode is one process: after a crash, the next run reconciles at once, not a TTL later."""
    store = Store(f"sqlite:///{tmp_path / 'cp.db'}")
    crashed = Lease(store, "reconciler", ttl=60, renew_every=10, holder="crashed-run")
    assert crashed.renew()
    restarted = Lease(store, "reconciler", ttl=60, renew_every=10, holder="next-run")
    restarted.start()
    try:
        assert restarted.holding
    finally:
        restarted.release()
        store.close()
