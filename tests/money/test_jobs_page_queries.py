"""``GET /v1/jobs`` reads its page's money in a fixed number of SQL statements, whatever the page size.

A control plane with the no-op backend, real SQLite, the API in process; every statement the request's own
thread sends is counted with a SQLAlchemy ``before_cursor_execute`` listener (the dispatcher's and reconciler's
threads are not counted).
"""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient
from sqlalchemy import event

from operators.control_plane.app import create_app
from operators.control_plane.auth import hash_token
from operators.control_plane.db.models import MoneyLedgerRow
from tests.stack_files import REAL_STACK_DIR
from tests.replicas import issued_token, noop_settings
from testbed.jobs import JobSpec
from testbed.money import LedgerKind

JOBS = 60


def test_statements_per_jobs_page_do_not_grow_with_its_size(tmp_path):
    tenant = "changwon-precision"  # the real region's sample company: priced, with a grant in won
    stack = REAL_STACK_DIR / "Pulumi.gyeongnam.yaml"
    app = create_app(
        noop_settings(tmp_path, stack, f"sqlite:///{tmp_path / 'cp.db'}", max_queued_jobs_per_tenant=JOBS + 10)
    )
    with TestClient(app) as client:
        token = issued_token(tmp_path, tenant)
        headers = {"Authorization": f"Bearer {token}"}
        plane = app.state.plane
        caller = plane.tokens.resolve(hash_token(token))
        for i in range(JOBS):
            plane.dispatch(plane.admit(caller, JobSpec(entrypoint=f"python -c 'print({i})'")))
        request_threads = ("AnyIO worker thread", threading.main_thread().name)
        statements: list[str] = []

        def count(conn, cursor, statement, *args):
            if threading.current_thread().name.startswith(request_threads):
                statements.append(statement)

        client.get("/v1/jobs", params={"limit": 1}, headers=headers).raise_for_status()  # the token is cached
        event.listen(plane.store.engine, "before_cursor_execute", count)
        try:
            per_page = {}
            for size in (1, 10, JOBS):
                statements.clear()
                page = client.get("/v1/jobs", params={"limit": size}, headers=headers)
                page.raise_for_status()
                assert len(page.json()["jobs"]) == size
                per_page[size] = len(statements)
        finally:
            event.remove(plane.store.engine, "before_cursor_execute", count)
        assert per_page[1] > 0, per_page  # the listener sees the request's statements
        assert per_page[1] == per_page[10] == per_page[JOBS], per_page

        # near its grant the company is told on every job, with its balance read from the ledger (held jobs too)
        with plane.store.write_session() as s:
            s.add(
                MoneyLedgerRow(
                    at=time.time(),
                    tenant=tenant,
                    job_id=None,
                    kind="adjustment",
                    amount_krw=150_000_000,
                    pool=None,
                    price_id=None,
                    seconds=0,
                    note="test: usage before this test",
                )
            )
        balance = plane.money.balance(tenant)
        near = client.get("/v1/jobs", params={"limit": 5}, headers=headers).json()["jobs"]
        assert balance.held_krw > 0 and all(
            f"{balance.remaining_krw:,} KRW remaining" in job["message"] for job in near
        )
        assert not any("KRW remaining" in job["message"] for job in page.json()["jobs"])  # below 80%: no notice

        # the batched answers are each job's own ledger entries
        holds = {e.job_id: e.amount_krw for e in plane.money.entries(tenant=tenant, kinds=[LedgerKind.HOLD])}
        jobs = page.json()["jobs"]
        assert len(holds) == JOBS and all(job["hold_krw"] == holds[job["id"]] > 0 for job in jobs)
