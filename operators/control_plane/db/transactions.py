"""The control plane's transactions and locked sections (SQLite or PostgreSQL), what :class:`.store.Store` runs in.

Replicas serialise work on one tenant with :meth:`Database.tenant_lock`: a transaction holding a
database lock (PostgreSQL: ``pg_advisory_xact_lock`` on the tenant; SQLite: ``BEGIN IMMEDIATE``,
the database's single writer). The store's calls made inside the section join its transaction.

Admission, dispatch and stop use :meth:`Database.tenant_section` instead: on PostgreSQL the same tenant
lock; on SQLite (one process) a lock on the tenant in this process only, its reads in their own
snapshot, its writes short transactions of their own through :meth:`Database.group_write` -- a group
commit: the writes of every thread waiting for the writer go in one transaction (an admission's rows:
:func:`..admission_writes.write_admission`), and each returns once that transaction is committed.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from typing import Callable, ContextManager, Iterator, TypeVar

from sqlalchemy import BigInteger, Connection, bindparam, func, select
from sqlalchemy.orm import Session, sessionmaker

from operators.control_plane.db.engine import GroupCommit, TimedLock, WriterQueue, make_engine
from operators.control_plane.db.migrate import lock_key

T = TypeVar("T")

# Built once: a statement built per call costs more to build and key for the cache than its round trip.
_ADVISORY_LOCK = select(func.pg_advisory_xact_lock(bindparam("key", type_=BigInteger)))


def begin_immediate(session: Session) -> None:
    """Open the session's SQLite transaction with ``BEGIN IMMEDIATE`` (the database's write lock, at once).

    Sent as a statement, not by an engine ``begin`` event: any connection event on the engine makes SQLAlchemy
    dispatch its events (before and after execute, cursor execute, begin, commit) on every statement, which took
    13-15% of an admission's and dispatch's CPU (docs/operators/scale.md, "No engine events on SQLite")."""
    session.connection().exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine and the transactions on it: reads, writes, locked sections, group commits (SQLite)."""

    def __init__(self, url: str):
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.inline_writes = url.startswith("sqlite")
        # SQLite has one writer at a time and its busy handler backs off in sleeps of up to
        # 100 ms; queueing writers on a lock in this process is far faster under concurrency.
        self._writers = WriterQueue() if self.inline_writes else None
        self._section = threading.local()  # the transaction of this thread's locked section
        self._tenant_locks: dict[str, TimedLock] = {}  # SQLite: the per-tenant sections
        self._tenant_locks_guard = threading.Lock()
        self._group = GroupCommit(self._leader_writer) if self.inline_writes else None  # SQLite: many threads' writes

    def _current(self) -> Session | None:
        """The transaction of this thread's locked section, if it is in one."""
        return getattr(self._section, "session", None)

    def session(self) -> ContextManager[Session]:
        """A read transaction (and, on PostgreSQL, any transaction); inside a locked section, its own."""
        current = self._current()
        return nullcontext(current) if current is not None else self._sessions.begin()

    def read(self) -> ContextManager[Connection]:
        """A connection for a few reads of plain rows (no ORM session around them); inside a locked section,
        the section's."""
        current = self._current()
        return nullcontext(current.connection()) if current is not None else self.engine.connect()

    def write_session(self) -> ContextManager[Session]:
        """A transaction that writes; inside a locked section, the section's."""
        current = self._current()
        return nullcontext(current) if current is not None else self._writer()

    @contextmanager
    def lock(self, name: str) -> Iterator[Session]:
        """A section serialised across replicas on ``name``: one transaction, committed at its end."""
        current = self._current()
        with self.write_session() as session:
            if session.get_bind().dialect.name == "postgresql":  # SQLite: the writer's BEGIN IMMEDIATE holds it
                session.connection().execute(_ADVISORY_LOCK, {"key": lock_key(name)})
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
        (:meth:`group_write`).

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

    def group_write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a write transaction: the current locked section's, or (SQLite) a group commit
        (:class:`GroupCommit`) with the work of every thread waiting for the writer. Returns ``work``'s result
        once that transaction is committed."""
        if self._current() is not None or self._group is None:
            with self.write_session() as s:
                return work(s)
        result: T = self._group.run(work)
        return result

    @contextmanager
    def _writer(self, leader: bool = False) -> Iterator[Session]:
        """A write transaction; on SQLite in the writer's turn (:class:`WriterQueue`), a group commit's leader's first."""
        with self._writers.held(leader) if self._writers else nullcontext(), self._sessions.begin() as session:
            if self.inline_writes:
                begin_immediate(session)
            yield session

    def _leader_writer(self) -> ContextManager[Session]:
        return self._writer(leader=True)

    def close(self) -> None:
        self.engine.dispose()
