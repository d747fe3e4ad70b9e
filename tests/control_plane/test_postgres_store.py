"""The control plane on a real PostgreSQL (the cluster's database), not only SQLite."""

from __future__ import annotations

import pytest


def test_control_plane_on_postgresql(postgres_url, tmp_path):
    from operators.control_plane.app import create_app
    from tests.serve import serve_in_thread
    from tests.replicas import issued_token, noop_settings
    from testbed.client import TestbedClient, TestbedError
    from testbed.config import stack_file_for

    settings = noop_settings(tmp_path, stack_file_for("gyeongnam"), postgres_url)
    app = create_app(settings)
    assert not app.state.plane.store.inline_writes
    with serve_in_thread(app) as url:
        token = lambda s: issued_token(tmp_path, s)  # noqa: E731
        alice, bob = TestbedClient(url, token("changwon-precision")), TestbedClient(url, token("gimhae-robotics"))
        job = alice.wait(alice.submit(entrypoint="true", cpus=2).id, timeout=30)
        assert job.status == "SUCCEEDED" and job.started_at
        with pytest.raises(TestbedError) as err:
            bob.get_job(job.id)
        assert err.value.status_code == 404
        usage = TestbedClient(url, token("operator")).usage()
        alice_usage = next(u for u in usage.tenants if u.tenant == "changwon-precision")
        assert alice_usage.jobs["SUCCEEDED"] == 1
    # the records outlive the process: a second control plane on the same database sees them
    again = create_app(settings, sync=False)
    assert again.state.plane.store.get_job(job.id).status == "SUCCEEDED"
    again.state.plane.store.close()


def test_two_replicas_fold_usage_into_one_totals_row_exactly(postgres_url):
    """Two control-plane replicas end jobs of the same tenant and GPU model at the same moment.

    A barrier inside both terminal transactions lines the two ledger folds up, so they hit the
    totals row together: on a key with no row yet (both try to create it) and on an existing one.
    Each increment must land exactly once: none lost to a unique-key failure, none doubled.
    """
    import threading
    import uuid

    from operators.control_plane.db.store import Store
    from tests.job_rows import job_row
    from operators.control_plane.db.ledger import Ledger

    replicas = [Store(postgres_url), Store(postgres_url)]
    ledger = Ledger(replicas[0])
    for store in replicas:
        Ledger(store).install()
    barrier = threading.Barrier(2)
    for store in replicas:  # runs before the ledger's fold, in the same transaction
        store.on_terminal.insert(0, lambda _session, _rows: barrier.wait(timeout=30))
    tenants = [f"race-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    t0 = 1_780_000_000.0
    try:
        for round_ in range(2 * len(tenants)):
            tenant = tenants[round_ // 2]  # every tenant twice: its row is new, then it exists
            jobs = []
            for _ in replicas:
                job_id = f"job-{uuid.uuid4().hex[:16]}"
                replicas[0].add_job(
                    job_row(
                        job_id,
                        tenant,
                        status="RUNNING",
                        cpus=1.5,
                        gpus=1,
                        gpu_model="l4",
                        submitted_at=t0,
                        started_at=t0,
                        dispatched=True,
                    )
                )
                jobs.append(job_id)
            errors: list[Exception] = []

            def end(store: Store, job_id: str) -> None:
                try:
                    store.update_job(job_id, status="SUCCEEDED", ended_at=t0 + 10)
                except Exception as exc:  # reported by the assertion below
                    errors.append(exc)

            threads = [threading.Thread(target=end, args=pair) for pair in zip(replicas, jobs)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert not errors, f"round {round_}: {errors[0]!r}"
        meters = ledger.snapshot(now=t0 + 100, tenants=tenants)
        for tenant in tenants:
            assert meters[tenant].jobs["SUCCEEDED"] == 4, tenant
            assert meters[tenant].gpu_seconds == {"l4": pytest.approx(40)}
            assert meters[tenant].cpu_seconds == pytest.approx(60)
    finally:
        for store in replicas:
            store.close()
