"""Writes sent together (``db.commit_writes``) on a real PostgreSQL: a priced admission's record and hold go in
one statement and its commit's writes (the job's money, the balance, two audit rows) with the COMMIT in another, four
queries in all reaching the server, and every row is what it would be written one statement at a time (the JSON
spec, the inbox rows in their order); writes of many rows go one statement each."""

from __future__ import annotations

from sqlalchemy import event, select

from operators.control_plane import audit
from operators.control_plane.audit import AuditKind
from operators.control_plane.auth import Principal
from operators.control_plane.db import balances
from operators.control_plane.db.commit_writes import TOGETHER_ROWS, execute_together
from operators.control_plane.db.store import Store
from operators.control_plane.db.models import AuditInboxRow, JobRow, MoneyBalanceRow, MoneyJobRow, MoneyLedgerRow
from testbed.jobs import JobSpec
from tests.benchmarks.bench_admission_throughput import planes_for
from tests.postgres import record_queries


def test_a_priced_admission_on_postgresql_is_four_statements_and_writes_every_row(postgres_url, tmp_path):
    (plane,), (tenant, _) = planes_for(postgres_url, tmp_path, 2, 1)
    try:
        check_admission(plane, tenant)
    finally:
        plane.shutdown()


def check_admission(plane, tenant: str, warm_up: int = 1, prepared: bool = False) -> None:
    """Admit ``warm_up`` times, then once more and check that one: four queries (``prepared``: each an ``EXECUTE``)
    and every row."""
    principal = Principal(subject=tenant, role="tenant")
    spec = JobSpec(entrypoint="python -c 'pass'", cpus=1, gpus=1, max_runtime_seconds=600, env={"K": "v"})
    sent = record_queries(plane.store.engine)  # what reaches the server, the pool's own checks included
    for _ in range(warm_up):  # the store's caches filled, its connection given back just now
        plane.admit(principal, spec)
    sent.clear()
    statements: list[str] = []
    event.listen(plane.store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    admitted = plane.admit_with_balance(principal, spec)
    # BEGIN with the tenant's lock, the balance read, the record with its hold, the commit's writes with COMMIT:
    # four round trips in all (pg_round_trips.postgresql_begin_with_first_statement, pg_round_trips.commit_with),
    # and no check of a connection used moments ago (engine.ping_when_idle)
    assert len(statements) == 4, statements
    assert sent == statements, sent
    if prepared:  # pg_round_trips.PreparedStatements
        assert all(s.startswith(("BEGIN;EXECUTE tb_", "EXECUTE tb_")) for s in statements), statements
    else:
        assert statements[0].startswith("BEGIN;SELECT pg_advisory_xact_lock")
        assert statements[2].startswith("WITH") and statements[3].startswith("WITH")
    assert statements[0].startswith("BEGIN;") and statements[3].endswith(";COMMIT")
    job_id = admitted.row.id
    with plane.store.session() as s:
        job = s.get(JobRow, job_id)
        assert job.spec["env"] == {"K": "v"} and job.gpus == 1  # the JSON column converted as the ORM would
        hold = s.scalars(select(MoneyLedgerRow).where(MoneyLedgerRow.job_id == job_id)).one()
        assert hold.kind == "hold" and hold.amount_krw == admitted.hold_krw > 0
        money = s.get(MoneyJobRow, job_id)
        assert money.held and money.hold_krw == hold.amount_krw and money.gpu_need_seconds == 600
        balance = s.get(MoneyBalanceRow, tenant)
        admitted_jobs = warm_up + 1
        assert balance.held_krw == admitted_jobs * hold.amount_krw and balance.held_gpu_seconds == admitted_jobs * 600
        inbox = s.scalars(select(AuditInboxRow).where(AuditInboxRow.job_id == job_id).order_by(AuditInboxRow.id))
        assert [(row.kind, row.tenant) for row in inbox] == [("job.admitted", tenant), ("ledger.hold", tenant)]


def test_writes_of_many_rows_go_one_statement_each_and_all_land(postgres_url):
    """A sync batch or a money round writes many rows: each write its own statement (no shape per row count to
    compile and keep), every row written."""
    store = Store(postgres_url)
    try:
        tenants = [f"tenant-{i}" for i in range(TOGETHER_ROWS + 3)]
        balances_rows = [
            {"tenant": t, "charged_krw": 5, "charged_gpu_seconds": 0, "held_krw": 0, "held_gpu_seconds": 0}
            for t in tenants
        ]
        audit_rows = [(AuditKind.JOB_ADMITTED, {"tenant": t}) for t in tenants[:2]]
        statements: list[str] = []
        event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        with store.engine.begin() as conn:
            execute_together(
                conn, [(balances._balances_upsert("postgresql"), balances_rows), audit.inbox_write(audit_rows)]
            )
        assert len(statements) == 2 and not any(s.startswith("WITH") for s in statements), statements
        with store.session() as s:
            assert {row.tenant: row.charged_krw for row in s.scalars(select(MoneyBalanceRow))} == dict.fromkeys(
                tenants, 5
            )
            assert [row.tenant for row in s.scalars(select(AuditInboxRow).order_by(AuditInboxRow.id))] == tenants[:2]
    finally:
        store.close()
