"""Durable state of the control plane: tokens and job records (SQLAlchemy; SQLite or PostgreSQL).

A job record is written before the backend is called and is the job's history after the backend
forgets it: final status, times and logs stay here. Alembic owns the schema (:mod:`.migrate`).

Replicas serialise work on one tenant with :meth:`Store.tenant_lock`: a transaction holding a
database lock (PostgreSQL: ``pg_advisory_xact_lock`` on the tenant; SQLite: ``BEGIN IMMEDIATE``,
the database's single writer). The store's calls made inside the section join its transaction.

Admission, dispatch and stop use :meth:`Store.tenant_section` instead: on PostgreSQL the same tenant
lock; on SQLite (one process) a lock on the tenant in this process only, its reads in their own
snapshot, its writes short transactions of their own, an admission's rows written by
:meth:`Store.insert` -- a group commit: the rows of every admission waiting for the writer go in one
transaction, and each returns once that transaction is committed.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator, NamedTuple, TypeVar

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Session, sessionmaker

from operators.control_plane.db import balances
from operators.control_plane.db.engine import GroupCommit, TimedLock, make_engine
from operators.control_plane.db.migrate import lock_key, upgrade
from operators.control_plane.db.models import DEFAULT_TOKEN_NAME, JobRow, TokenRow
from testbed.jobs import TERMINAL_STATUSES, JobStatus

LOG_LIMIT_BYTES = 1_000_000  # stored logs keep the last MB of a job's output
# Unfinished jobs, named positively so the status index serves the reads (finished jobs are not scanned).
ACTIVE_STATUSES = [status.value for status in JobStatus if status not in TERMINAL_STATUSES]
# The message the testbed gives a job it stops (max run time, grant, idle GPUs) starts so; it is the job's last
# word: no later observation of the backend (its own "stopped", from any replica) replaces it.
STOP_REASON_PREFIX = "stopped:"
T = TypeVar("T")
# The hot reads of admission and dispatch, built once (a statement built per call costs more than its query).
_HELD_BY = select(
    func.count(JobRow.id),
    func.coalesce(func.sum(JobRow.cpus), 0.0),
    func.coalesce(func.sum(JobRow.gpus), 0),
    func.coalesce(func.sum(JobRow.memory_bytes), 0),
).where(
    JobRow.tenant == bindparam("tenant"),
    JobRow.dispatched.is_(True),
    JobRow.status.in_(ACTIVE_STATUSES),
    JobRow.id != bindparam("exclude"),
)
_QUEUED_COUNT = select(func.count(JobRow.id)).where(  # ix_jobs_tenant_status: the tenant's unfinished jobs only
    JobRow.tenant == bindparam("tenant"), JobRow.status.in_(ACTIVE_STATUSES), JobRow.dispatched.is_(False)
)


class QueuedJob(NamedTuple):
    """What dispatch reads of a queued job before it tries it (the full record is read under the lock)."""

    id: str
    tenant: str
    cpus: float
    gpus: int
    memory_bytes: int
    message: str


class Store:
    """Tokens and jobs, behind short transactions; the schema is brought up to date first."""

    def __init__(self, url: str, migrate: bool = True, opening_prices: dict[str, Any] | None = None):
        # Called inside the transaction that moves a job into a terminal state (e.g. the ledger).
        self.on_terminal: list[Callable[[Session, JobRow], None]] = []
        balances.install()  # every ledger entry moves its tenant's running balance in its own transaction
        if migrate:
            upgrade(url, opening_prices=opening_prices)
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.inline_writes = url.startswith("sqlite")
        self._write_sessions = (
            sessionmaker(self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False)
            if self.inline_writes
            else self._sessions
        )
        # SQLite has one writer at a time and its busy handler backs off in sleeps of up to
        # 100 ms; queueing writers on a lock in this process is far faster under concurrency.
        self._write_lock = TimedLock() if self.inline_writes else nullcontext()
        self._section = threading.local()  # the transaction of this thread's locked section
        self._tenant_locks: dict[str, TimedLock] = {}  # SQLite: the per-tenant sections
        self._tenant_locks_guard = threading.Lock()
        self._group = GroupCommit(self._writer) if self.inline_writes else None  # SQLite: the writes of many threads

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read transaction (and, on PostgreSQL, any transaction); inside a locked section, its own."""
        current: Session | None = getattr(self._section, "session", None)
        if current is not None:
            yield current
            return
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for a few reads of plain rows (no ORM session around them); inside a locked section,
        the section's."""
        current: Session | None = getattr(self._section, "session", None)
        if current is not None:
            yield current.connection()
            return
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A transaction that writes; inside a locked section, the section's."""
        current: Session | None = getattr(self._section, "session", None)
        if current is not None:
            yield current
            return
        with self._writer() as session:
            yield session

    @contextmanager
    def lock(self, name: str) -> Iterator[Session]:
        """A section serialised across replicas on ``name``: one transaction, committed at its end."""
        current: Session | None = getattr(self._section, "session", None)
        with nullcontext(current) if current is not None else self.write_session() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(select(func.pg_advisory_xact_lock(lock_key(name))))
            else:
                session.connection()  # BEGIN IMMEDIATE now: the write lock is held from here
            self._section.session = session
            try:
                yield session
            finally:
                self._section.session = current

    def tenant_lock(self, tenant: str) -> ContextManager[Session]:
        """Admission and dispatch of one tenant's jobs run one at a time, whichever replica runs them."""
        return self.lock(f"testbed:tenant:{tenant}")

    @contextmanager
    def tenant_section(self, tenant: str) -> Iterator[None]:
        """One tenant's admissions, dispatches and stops, one at a time. PostgreSQL: :meth:`tenant_lock` (any
        replica). SQLite (a single process): a lock on the tenant here (re-entered by the thread that holds it),
        holding no database lock, so other tenants' work reads and writes meanwhile: a backend call made in the
        section (a dispatch) does not hold the database's one writer. Its writes are transactions of their own
        (an admission's rows go through :meth:`insert`).

        Whatever else writes a tenant's rows meanwhile (the sync, charges, releases) only lowers its
        queued and running jobs or raises its balance, so a check read here stays on the safe side."""
        if not self.inline_writes:
            with self.tenant_lock(tenant):
                yield
            return
        held: set[str] = self._section.__dict__.setdefault("tenants", set())
        if tenant in held:
            yield
            return
        with self._tenant_locks_guard:
            lock = self._tenant_locks.setdefault(tenant, TimedLock())
        with lock:
            held.add(tenant)
            try:
                yield
            finally:
                held.discard(tenant)

    def insert(self, rows: list[Any]) -> None:
        """Write new rows durably (:meth:`group_write`); returns once they are committed (or raises: none written)."""
        self.group_write(lambda s: s.add_all(rows))

    def group_write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a write transaction: the current locked section's, or (SQLite) a group commit
        (:class:`GroupCommit`) with the work of every thread waiting for the writer. Returns ``work``'s result
        once that transaction is committed."""
        current: Session | None = getattr(self._section, "session", None)
        if current is not None or self._group is None:
            with self.write_session() as s:
                return work(s)
        result: T = self._group.run(work)
        return result

    @contextmanager
    def _writer(self) -> Iterator[Session]:
        with self._write_lock, self._write_sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # -- tokens ---------------------------------------------------------------------------
    def put_token(
        self,
        token_hash: str,
        subject: str,
        role: str,
        name: str = DEFAULT_TOKEN_NAME,
        on_write: Callable[[Session, list[TokenRow]], None] | None = None,
    ) -> None:
        """Store a subject's new token hash under ``name``; its older token of that name is revoked (kept).

        ``on_write(session, revoked rows)`` runs in the same transaction (the audit row).
        """
        now = time.time()
        with self.write_session() as s:
            revoked = list(
                s.scalars(
                    select(TokenRow).where(
                        TokenRow.subject == subject,
                        TokenRow.role == role,
                        TokenRow.name == name,
                        TokenRow.revoked_at.is_(None),
                        TokenRow.token_hash != token_hash,
                    )
                )
            )
            for row in revoked:
                row.revoked_at = now
            s.merge(
                TokenRow(token_hash=token_hash, subject=subject, role=role, created_at=now, name=name, revoked_at=None)
            )
            if on_write is not None:
                on_write(s, revoked)

    def revoke_tokens(
        self, subject: str, name: str, on_write: Callable[[Session, list[TokenRow]], None] | None = None
    ) -> list[TokenRow]:
        """Revoke a subject's active token(s) of ``name``; the rows stay, marked revoked."""
        with self.write_session() as s:
            rows = list(
                s.scalars(
                    select(TokenRow).where(
                        TokenRow.subject == subject, TokenRow.name == name, TokenRow.revoked_at.is_(None)
                    )
                )
            )
            for row in rows:
                row.revoked_at = time.time()
            if rows and on_write is not None:
                on_write(s, rows)
            return rows

    def find_token(self, token_hash: str) -> TokenRow | None:
        """The token of this hash, unless revoked."""
        with self.session() as s:
            row = s.get(TokenRow, token_hash)
            return row if row is not None and row.revoked_at is None else None

    def list_tokens(self, subject: str) -> list[TokenRow]:
        """A subject's tokens, active and revoked, oldest first."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(TokenRow).where(TokenRow.subject == subject).order_by(TokenRow.created_at, TokenRow.name)
                )
            )

    def token_subjects(self) -> set[str]:
        """Subjects that hold an active default token."""
        with self.session() as s:
            return set(
                s.scalars(
                    select(TokenRow.subject).where(TokenRow.revoked_at.is_(None), TokenRow.name == DEFAULT_TOKEN_NAME)
                )
            )

    # -- jobs -----------------------------------------------------------------------------
    def add_job(self, row: JobRow) -> JobRow:
        with self.write_session() as s:
            s.add(row)
        return row

    def get_job(self, job_id: str) -> JobRow | None:
        with self.session() as s:
            return s.get(JobRow, job_id)

    def list_jobs(
        self,
        tenant: str | None = None,
        status: JobStatus | None = None,
        limit: int | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[JobRow]:
        """Newest first; ``after`` (submitted_at, id) of the last job of the previous page starts the next."""
        query = select(JobRow).order_by(JobRow.submitted_at.desc(), JobRow.id.desc())
        if after is not None:
            query = query.where(
                or_(JobRow.submitted_at < after[0], and_(JobRow.submitted_at == after[0], JobRow.id < after[1]))
            )
        if tenant is not None:
            query = query.where(JobRow.tenant == tenant)
        if status is not None:
            query = query.where(JobRow.status == status.value)
        if limit is not None:
            query = query.limit(limit)
        with self.session() as s:
            return list(s.scalars(query))

    def active_jobs(self) -> list[JobRow]:
        """Jobs not yet in a terminal state, oldest first."""
        terminal = [status.value for status in TERMINAL_STATUSES]
        query = select(JobRow).where(JobRow.status.not_in(terminal)).order_by(JobRow.submitted_at)
        with self.session() as s:
            return list(s.scalars(query))

    def dispatched_jobs(self, status: JobStatus | None = None) -> list[JobRow]:
        """Dispatched jobs not yet in a terminal state (or in ``status``), oldest first."""
        query = select(JobRow).where(JobRow.dispatched.is_(True)).order_by(JobRow.submitted_at)
        query = (
            query.where(JobRow.status == status.value)
            if status is not None
            else query.where(JobRow.status.in_(ACTIVE_STATUSES))
        )
        with self.session() as s:
            return list(s.scalars(query))

    def queued_jobs(self) -> list["QueuedJob"]:
        """Admitted jobs not yet dispatched (nor ended), oldest first, as the few columns dispatch needs."""
        query = (
            select(JobRow.id, JobRow.tenant, JobRow.cpus, JobRow.gpus, JobRow.memory_bytes, JobRow.message)
            .where(JobRow.dispatched.is_(False), JobRow.status.in_(ACTIVE_STATUSES))
            .order_by(JobRow.submitted_at, JobRow.id)
        )
        with self.session() as s:
            return [QueuedJob(*row) for row in s.execute(query)]

    def held_by_tenant(self) -> dict[str, tuple[int, float, int, int]]:
        """What each tenant's dispatched, unfinished jobs hold: (jobs, CPUs, GPUs, memory bytes), in one read."""
        query = (
            select(
                JobRow.tenant,
                func.count(JobRow.id),
                func.coalesce(func.sum(JobRow.cpus), 0.0),
                func.coalesce(func.sum(JobRow.gpus), 0),
                func.coalesce(func.sum(JobRow.memory_bytes), 0),
            )
            .where(JobRow.dispatched.is_(True), JobRow.status.in_(ACTIVE_STATUSES))
            .group_by(JobRow.tenant)
        )
        with self.session() as s:
            return {
                tenant: (int(count), float(cpus), int(gpus), int(memory))
                for tenant, count, cpus, gpus, memory in s.execute(query)
            }

    def held_by(self, tenant: str, exclude: str | None = None) -> tuple[int, float, int, int]:
        """What a tenant's dispatched, unfinished jobs hold: (jobs, CPUs, GPUs, memory bytes)."""
        with self.read() as conn:
            count, cpus, gpus, memory = conn.execute(_HELD_BY, {"tenant": tenant, "exclude": exclude or ""}).one()
        return int(count), float(cpus), int(gpus), int(memory)

    def queued_count(self, tenant: str) -> int:
        """How many of a tenant's jobs wait, admitted and not yet dispatched."""
        with self.read() as conn:
            return int(conn.execute(_QUEUED_COUNT, {"tenant": tenant}).scalar_one())

    def idle_gpu_seconds(self, tenants: list[str] | None = None) -> dict[str, float]:
        """Tenant -> GPU-seconds its jobs held idle (operators/control_plane/idle.py)."""
        query = (
            select(JobRow.tenant, func.sum(JobRow.idle_gpu_seconds))
            .where(JobRow.idle_gpu_seconds > 0)
            .group_by(JobRow.tenant)
        )
        if tenants is not None:
            query = query.where(JobRow.tenant.in_(tenants))
        with self.session() as s:
            return {tenant: float(seconds or 0.0) for tenant, seconds in s.execute(query)}

    def update_jobs(self, changes: dict[str, dict[str, Any]]) -> list[JobRow]:
        """Apply many jobs' changes in one transaction (one sync round).

        The rows are locked first, in id order: a reader refreshing one of them (another replica)
        waits before this round folds anything, rather than deadlocking on a ledger row.
        """
        rows = []
        with self.write_session() as s:
            locked = {
                row.id: row
                for row in s.scalars(
                    select(JobRow).where(JobRow.id.in_(sorted(changes))).order_by(JobRow.id).with_for_update()
                )
            }
            for job_id, job_changes in changes.items():
                row = self._apply(s, job_id, job_changes, locked.get(job_id))
                if row is not None:
                    rows.append(row)
        return rows

    def update_job(self, job_id: str, **changes: Any) -> JobRow | None:
        """Apply changes to a job, unless it is already terminal (a terminal record is final); on SQLite in a
        group commit with other threads' writes."""
        return self.group_write(lambda s: self._apply(s, job_id, changes))

    def _apply(self, s: Session, job_id: str, changes: dict[str, Any], row: JobRow | None = None) -> JobRow | None:
        """Change a job (``row``: already read and locked in ``s``) and run the terminal hooks if it ends."""
        if changes.get("logs") is not None:
            changes["logs"] = changes["logs"][-LOG_LIMIT_BYTES:]
        row = row or s.get(JobRow, job_id, with_for_update=True)
        if row is None or row.terminal:
            return row
        if row.stop_requested_at is not None and row.message.startswith(STOP_REASON_PREFIX):
            changes.pop("message", None)  # decided on the locked row: a sync that read the job earlier loses
        for key, value in changes.items():
            setattr(row, key, value)
        if row.terminal:
            for hook in self.on_terminal:
                hook(s, row)
        return row
