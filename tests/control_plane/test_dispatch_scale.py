"""A reconciler round's database work at scale: it does not grow with the finished jobs a region
keeps, nor with the length of a full tenant's queue (statements counted with a SQLAlchemy event
listener on the control plane's own engine; SQLite and PostgreSQL)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import event

from operators.control_plane.auth import Principal
from operators.control_plane.plane import ControlPlane
from operators.control_plane.db.models import JobRow
from testbed.jobs import JobSpec, JobStatus
from tests.job_rows import add_rows
from tests.replicas import noop_settings, stack_with_tenants

TENANTS = 3
LONG = "sleep 100000"  # the no-op backend "runs" it that long: the tenant stays at its one running job


def _plane(home: Path, database_url: str) -> tuple[ControlPlane, list[str]]:
    stack, tenants = stack_with_tenants(home, TENANTS, {"max_running_jobs": 1})
    settings = noop_settings(home, stack, database_url, max_queued_jobs_per_tenant=100_000)
    return ControlPlane(settings), tenants


def _finished(store, tenant: str, count: int) -> None:
    """``count`` jobs that ended long ago, written as the reconciler leaves them."""
    now = time.time()
    rows = [
        JobRow(
            id=f"job-{uuid.uuid4().hex[:16]}",
            tenant=tenant,
            region="gyeongnam",
            name="old",
            experiment="x",
            status=JobStatus.SUCCEEDED.value,
            entrypoint="true",
            template=None,
            spec={"kind": "command"},
            cpus=1.0,
            gpus=0,
            gpu_model=None,
            memory_bytes=2**30,
            submitted_at=now - 3600,
            started_at=now - 3500,
            ended_at=now - 3400,
            last_seen_at=now - 3400,
            dispatched=True,
            backend_ref=None,
            message="",
            logs="",
        )
        for _ in range(count)
    ]
    add_rows(store, rows)


def _statements_in_a_round(plane: ControlPlane) -> int:
    count = [0]

    def counted(*_args) -> None:
        count[0] += 1

    event.listen(plane.store.engine, "before_cursor_execute", counted)
    try:
        plane.dispatcher.sync_once()
    finally:
        event.remove(plane.store.engine, "before_cursor_execute", counted)
    return count[0]


def _load(plane: ControlPlane, tenants: list[str], finished: int, queued: int) -> None:
    """Each tenant: one job running (its whole allowance), ``queued`` behind it, ``finished`` done."""
    for tenant in tenants:
        who = Principal(subject=tenant, role="tenant")
        plane.dispatch(plane.admit(who, JobSpec(entrypoint=LONG, cpus=1)))
        for _ in range(queued):
            plane.admit(who, JobSpec(entrypoint=LONG, cpus=1))
        _finished(plane.store, tenant, finished)


def _backend_calls(plane: ControlPlane) -> list:
    """The launch requests the backend gets from now on (in order)."""
    calls: list = []
    submit = plane.dispatcher.backend.submit
    plane.dispatcher.backend.submit = lambda request: calls.append(request) or submit(request)
    return calls


@pytest.fixture
def on_sqlite(tmp_path):
    """A control plane on SQLite (the no-op backend, no sync thread: the test runs the rounds) and its tenants."""
    plane, tenants = _plane(tmp_path, f"sqlite:///{tmp_path / 'cp.db'}")
    yield plane, tenants
    plane.shutdown()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cp.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
def test_a_round_does_not_grow_with_finished_jobs_or_a_full_tenants_queue(tmp_path, database_url):
    plane, tenants = _plane(tmp_path, database_url)
    try:
        _load(plane, tenants, finished=2, queued=2)
        plane.dispatcher.sync_once()  # settles what the admissions left (messages, first observations)
        small = _statements_in_a_round(plane)
        _load(plane, tenants, finished=300, queued=100)  # tenants' running jobs: still one each
        plane.dispatcher.sync_once()
        large = _statements_in_a_round(plane)
        assert large == small, (small, large)
        jobs = plane.store.list_jobs()
        running = [j for j in jobs if j.dispatched and not j.terminal]
        queued = [j for j in jobs if not j.dispatched]
        assert len(running) == TENANTS and len(queued) == TENANTS * 103  # 2 + 100, and the second load's first
        # each tenant's first queued job says why it waits
        for tenant in tenants:
            first = min((j for j in queued if j.tenant == tenant), key=lambda j: (j.submitted_at, j.id))
            assert first.message == "queued: tenant runs 1 of 1 allowed jobs", first.message
    finally:
        plane.shutdown()


def test_a_freed_slot_goes_to_the_oldest_queued_job_in_one_round(on_sqlite):
    plane, tenants = on_sqlite
    who = Principal(subject=tenants[0], role="tenant")
    first = plane.dispatch(plane.admit(who, JobSpec(entrypoint=LONG, cpus=1)))
    waiting = [plane.admit(who, JobSpec(entrypoint=LONG, cpus=1)) for _ in range(5)]
    plane.dispatcher.sync_once()
    assert not any(plane.store.get_job(j.id).dispatched for j in waiting)
    plane.stop(Principal(subject=tenants[0], role="tenant"), first.id)
    plane.dispatcher.sync_once()
    states = [plane.store.get_job(j.id).dispatched for j in waiting]
    assert states == [True, False, False, False, False], states


def test_a_job_admitted_without_room_says_why_at_once_and_waits_for_the_sync(on_sqlite):
    plane, tenants = on_sqlite
    who = Principal(subject=tenants[0], role="tenant")
    first = plane.dispatch(plane.admit(who, JobSpec(entrypoint=LONG, cpus=1)))
    assert first.dispatched and first.message == ""
    backend_calls = _backend_calls(plane)
    waiting = plane.admit(who, JobSpec(entrypoint=LONG, cpus=1))
    assert waiting.message == "queued: tenant runs 1 of 1 allowed jobs"  # the admission read says so
    assert plane.store.get_job(waiting.id).message == waiting.message  # stored with the record
    statements = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(plane.store.engine, "before_cursor_execute", record)
    assert plane.dispatch(waiting) is waiting  # not tried again (no lock, no read): no room until an end
    event.remove(plane.store.engine, "before_cursor_execute", record)
    assert statements == [] and backend_calls == []
    other = plane.admit(Principal(subject=tenants[1], role="tenant"), JobSpec(entrypoint=LONG, cpus=1))
    assert other.message == "queued" and plane.dispatch(other).dispatched  # another tenant's room is its own
    plane.stop(who, first.id)
    plane.dispatcher.sync_once()  # the end makes room: the sync hands the waiting job on
    assert plane.store.get_job(waiting.id).dispatched and len(backend_calls) == 2


def test_a_job_stopped_before_its_dispatch_is_never_handed_to_the_backend(on_sqlite):
    plane, tenants = on_sqlite
    who = Principal(subject=tenants[0], role="tenant")
    backend_calls = _backend_calls(plane)
    admitted = plane.admit(who, JobSpec(entrypoint=LONG, cpus=1))  # room: dispatch would hand it on
    plane.stop(who, admitted.id)  # another request stops it first
    assert plane.dispatch(admitted).status == JobStatus.STOPPED.value  # admission's record is stale now
    assert backend_calls == []
    fresh = plane.admit(who, JobSpec(entrypoint=LONG, cpus=1))
    assert plane.dispatch(fresh).dispatched and len(backend_calls) == 1


def test_two_jobs_admitted_with_room_for_one_hand_on_only_the_first(on_sqlite):
    """Admission saw room for both; the first one's dispatch took it, so the second one's dispatch (which reads
    whether its job still waits and the tenant's room in one read) leaves it queued, saying why."""
    plane, tenants = on_sqlite
    who = Principal(subject=tenants[0], role="tenant")
    backend_calls = _backend_calls(plane)
    first, second = (plane.admit(who, JobSpec(entrypoint=LONG, cpus=1)) for _ in range(2))
    assert first.message == second.message == "queued"  # neither was dispatched when the other was admitted
    assert plane.dispatch(first).dispatched
    waiting = plane.dispatch(second)
    assert not waiting.dispatched and waiting.message == "queued: tenant runs 1 of 1 allowed jobs"
    assert len(backend_calls) == 1 and plane.store.get_job(second.id).message == waiting.message


def test_admission_and_dispatch_read_a_long_queue_from_the_index(on_sqlite):
    """With hundreds of jobs waiting, admission's read (``balance_and_jobs``) and a request's dispatch check
    (``held_if_queued``) count the waiting jobs from ix_jobs_tenant_dispatched_status alone and read rows only of
    the dispatched ones (SQLite's own plan of the statements they send)."""
    plane, tenants = on_sqlite
    who = Principal(subject=tenants[0], role="tenant")
    plane.dispatch(plane.admit(who, JobSpec(entrypoint=LONG, cpus=1)))
    waiting = [plane.admit(who, JobSpec(entrypoint=LONG, cpus=1)) for _ in range(300)]
    sent = []

    def record(_conn, _cursor, statement, parameters, *_args) -> None:
        sent.append((statement, parameters))

    event.listen(plane.store.engine, "before_cursor_execute", record)
    try:
        _balance, jobs = plane.money.balance_and_jobs(tenants[0])
        held = plane.store.held_if_queued(tenants[0], waiting[0].id)
    finally:
        event.remove(plane.store.engine, "before_cursor_execute", record)
    assert jobs.queued == 300 and jobs.held.jobs == 1 and held == jobs.held
    assert len(sent) == 2
    with plane.store.engine.connect() as conn:
        for statement, parameters in sent:
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            searches = [step for step in plan if " jobs " in f"{step} "]
            assert searches and all("ix_jobs_tenant_dispatched_status" in s or "(id=?)" in s for s in searches), plan
            if statement is sent[0][0]:  # the queue's count: the index alone
                assert any("COVERING INDEX ix_jobs_tenant_dispatched_status" in s for s in searches), plan


def test_hot_statements_are_rendered_once(on_sqlite):
    """Admission's read, a request's dispatch check and its mark send the SQL compiled with the statement the first
    time, not a rendering of it per execution (what a list of values in ``in_`` costs: docs/operators/scale.md)."""
    plane, tenants = on_sqlite
    admitted = [
        (t, plane.admit(Principal(subject=t, role="tenant"), JobSpec(entrypoint=LONG, cpus=1))) for t in tenants[:2]
    ]
    sent: list[list[str]] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        sent[-1].append(statement)

    event.listen(plane.store.engine, "before_cursor_execute", record)
    try:
        for tenant, row in admitted:  # the same statements for two tenants' jobs
            sent.append([])
            plane.money.balance_and_jobs(tenant)
            plane.store.held_if_queued(tenant, row.id)
            assert plane.dispatch(row).dispatched
    finally:
        event.remove(plane.store.engine, "before_cursor_execute", record)
    first, second = sent
    assert first == second and sum("jobs.status IN (?, ?)" in s for s in first) >= 3, first
    assert all(a is b for a, b in zip(first, second)), [a for a, b in zip(first, second) if a is not b]
