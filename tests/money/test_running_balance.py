"""The running balance (``money_balances``/``money_jobs``) equals the ledger's own sums after every kind of entry,
on SQLite and PostgreSQL: holds (alone and group-committed), charges beyond a hold, releases, charges after a
release, openings, adjustments, GPU and CPU jobs; and 0008_balances builds the same from an existing ledger."""

from __future__ import annotations

import random
import threading

from sqlalchemy import case, delete, func, select

from operators.control_plane.admission_writes import write_admission
from operators.control_plane.db import balances, money_rounds
from operators.control_plane.db.models import JobRow, MoneyBalanceRow, MoneyJobRow, MoneyLedgerRow
from operators.control_plane.db.pricing import JobShape
from tests.job_rows import add_rows, job_row
from tests.money.test_ledger import GIB, STACK, T0, money_for, running_job, store  # noqa: F401  (fixture)

TENANTS = ["changwon-precision", "gimhae-robotics"]


def entry(tenant: str, kind: str, amount: int, job_id: str | None = None, gpu_seconds: int = 0) -> MoneyLedgerRow:
    return MoneyLedgerRow(
        at=T0, tenant=tenant, job_id=job_id, kind=kind, amount_krw=amount, gpu_seconds=gpu_seconds, note="test"
    )


def ledger_sums(s, tenant: str) -> tuple[int, int, int, int]:
    """(charged won, charged GPU-seconds, held won, held GPU-seconds) summed by SQL from the ledger alone, as
    docs/money.md states the rules: the oracle the running balance is held to (independent of its fold)."""
    t = MoneyLedgerRow
    charged, charged_gpu = s.execute(
        select(func.coalesce(func.sum(t.amount_krw), 0), func.coalesce(func.sum(t.gpu_seconds), 0)).where(
            t.tenant == tenant, t.kind.in_(["opening", "charge", "adjustment"])
        )
    ).one()
    released = select(t.job_id).where(t.tenant == tenant, t.kind == "release")

    def of_kind(kind: str, column):
        return func.coalesce(func.sum(case((t.kind == kind, column), else_=0)), 0)

    per_job = (
        select(
            t.job_id.label("job_id"),
            of_kind("hold", t.amount_krw).label("hold"),
            of_kind("charge", t.amount_krw).label("charged"),
            of_kind("charge", t.gpu_seconds).label("charged_gpu"),
        )
        .where(t.tenant == tenant, t.job_id.in_(select(t.job_id).where(t.tenant == tenant, t.kind == "hold")))
        .where(t.job_id.not_in(released))
        .group_by(t.job_id)
        .subquery()
    )
    gpu_need = JobRow.gpus * JobRow.spec["max_runtime_seconds"].as_integer()
    held, held_gpu = s.execute(
        select(
            func.sum(case((per_job.c.hold > per_job.c.charged, per_job.c.hold - per_job.c.charged), else_=0)),
            func.sum(case((gpu_need > per_job.c.charged_gpu, gpu_need - per_job.c.charged_gpu), else_=0)),
        ).select_from(per_job.outerjoin(JobRow, JobRow.id == per_job.c.job_id))
    ).one()
    return int(charged), int(charged_gpu), int(held or 0), int(held_gpu or 0)


def assert_matches_ledger(money, tenants=TENANTS) -> None:
    with money.store.session() as s:
        for tenant in tenants:
            running = money.read_balance(s, tenant)
            kept = (running.charged_krw, running.charged_gpu_seconds, running.held_krw, running.held_gpu_seconds)
            assert kept == ledger_sums(s, tenant), tenant


def test_the_running_balance_follows_every_kind_of_entry(store):  # noqa: F811
    money = money_for(store)
    rng = random.Random(7)
    tenant = STACK.tenant(TENANTS[0])
    jobs = []
    for i in range(6):
        gpus = i % 2
        shape = JobShape(cpus=2, gpus=gpus, memory_bytes=4 * GIB, max_runtime_seconds=600 * (i + 1))
        row = running_job(store, f"job-r{i}", T0, shape.max_runtime_seconds, cpus=2, gpus=gpus, memory=4 * GIB)
        row.tenant = tenant.id
        money.record_hold(row.id, tenant.id, money.hold_for(tenant, shape, T0), shape, T0)
        jobs.append(row.id)
    assert_matches_ledger(money)
    assert money.balance(tenant.id).held_gpu_seconds == 600 * (2 + 4 + 6)  # the GPU jobs' GPUs x max run time
    # several holds in one group commit, of two tenants
    other = STACK.tenant(TENANTS[1])
    shape = JobShape(cpus=1, gpus=0, memory_bytes=GIB, max_runtime_seconds=3600)
    add_rows(
        store,
        [
            money.hold_row(f"job-g{i}", t.id, money.hold_for(t, shape, T0), shape, T0)
            for i, t in enumerate([tenant, other] * 3)
        ],
    )
    assert_matches_ledger(money)
    # admissions as admission writes them (Core statements, no ORM hooks): GPU jobs, from threads at once
    gpu_shape = JobShape(cpus=1, gpus=1, memory_bytes=GIB, max_runtime_seconds=1800)
    held_gpu = money.balance(other.id).held_gpu_seconds

    def admit(i: int, t) -> None:
        row = job_row(f"job-w{i}", t.id, gpus=1, spec={"max_runtime_seconds": 1800})
        write_admission(store, row, money.hold_row(row.id, t.id, money.hold_for(t, gpu_shape, T0), gpu_shape, T0))

    threads = [threading.Thread(target=admit, args=(i, t)) for i, t in enumerate([tenant, other] * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert_matches_ledger(money)
    assert money.balance(other.id).held_gpu_seconds == held_gpu + 3 * 1800
    jobs.extend(f"job-w{i}" for i in range(6))  # released when they end, below
    # charges (some beyond the hold), a release, a charge after the release, an opening and adjustments
    for step in range(1, 5):
        money_rounds.accrue_running(money, T0 + 400 * step, until_of=lambda row, step=step: T0 + 400 * step)
        assert_matches_ledger(money)
    with store.write_session() as s:
        s.add(entry(tenant.id, "charge", 10_000_000, "job-r1", gpu_seconds=9_999))  # far beyond its hold
        s.add(entry(tenant.id, "opening", 1234, gpu_seconds=3600))
        s.add(entry(other.id, "adjustment", -rng.randint(1, 500)))
    assert_matches_ledger(money)
    store.update_job("job-r2", status="SUCCEEDED", ended_at=T0 + 1000)  # last charge and release
    with store.write_session() as s:
        s.add(entry(tenant.id, "charge", 77, "job-r2", gpu_seconds=5))  # after its release: charged, nothing held
    assert_matches_ledger(money)
    # the rest end in one sync batch (their last charges and releases written together), one of them alone
    store.update_jobs({job_id: {"status": "STOPPED", "ended_at": T0 + 2000} for job_id in jobs[1:]})
    store.update_job(jobs[0], status="STOPPED", ended_at=T0 + 2000)
    assert_matches_ledger(money)
    assert money.balance(tenant.id).held_gpu_seconds == 0
    with store.session() as s:  # each job released once, after its last charge (job-r2 when it ended above)
        released = s.execute(
            select(MoneyLedgerRow.job_id, func.count(), func.max(MoneyLedgerRow.id))
            .where(MoneyLedgerRow.kind == "release")
            .group_by(MoneyLedgerRow.job_id)
        ).all()
        assert sorted(job_id for job_id, count, _ in released if count == 1) == sorted(jobs)
        for job_id, _count, release_id in released:  # what it releases: its hold less everything charged before
            entries = s.execute(
                select(MoneyLedgerRow.id, MoneyLedgerRow.kind, MoneyLedgerRow.amount_krw).where(
                    MoneyLedgerRow.job_id == job_id
                )
            ).all()
            hold = sum(amount for _, kind, amount in entries if kind == "hold")
            charged = sum(amount for id_, kind, amount in entries if kind == "charge" and id_ < release_id)
            release = next(amount for id_, _, amount in entries if id_ == release_id)
            assert release == max(0, hold - charged), (job_id, release, hold, charged)


def test_rebuild_from_the_ledger_gives_the_kept_balance(store):  # noqa: F811
    """What 0008_balances does to an existing ledger: the same rows the live upkeep wrote."""
    money = money_for(store)
    tenant = STACK.tenant(TENANTS[0])
    for i in range(3):
        shape = JobShape(cpus=4, gpus=1, memory_bytes=16 * GIB, max_runtime_seconds=3600)
        running_job(store, f"job-b{i}", T0, 3600)
        money.record_hold(f"job-b{i}", tenant.id, money.hold_for(tenant, shape, T0), shape, T0)
    money_rounds.accrue_running(money, T0 + 900, until_of=lambda row: T0 + 900)
    store.update_job("job-b0", status="FAILED", ended_at=T0 + 950)

    def kept() -> tuple[list, list]:
        with store.session() as s:
            return (
                sorted((r.tenant, r.charged_krw, r.held_krw, r.held_gpu_seconds) for r in s.query(MoneyBalanceRow)),
                sorted((r.job_id, r.held, r.released, r.hold_krw, r.charged_krw) for r in s.query(MoneyJobRow)),
            )

    live = kept()
    assert live[0] and live[1]
    with store.engine.begin() as conn:
        conn.execute(delete(MoneyBalanceRow.__table__))
        conn.execute(delete(MoneyJobRow.__table__))
        balances.rebuild(conn)
    assert kept() == live
    assert_matches_ledger(money)
