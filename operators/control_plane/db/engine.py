"""The database engine of the control plane (SQLite with WAL, or PostgreSQL) and what every caller of it shares:
the time a locked database is waited for, the in-process writer queue, and INSERT ... ON CONFLICT per dialect."""

from __future__ import annotations

import contextvars
import threading
from contextlib import contextmanager
from typing import Any, Callable, ContextManager, Iterator

from sqlalchemy import Table, create_engine, event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from operators.control_plane.db.pg_round_trips import postgresql_begin_with_first_statement, prepare_repeated_statements
from testbed.clock import SYSTEM_CLOCK, Clock

# A locked or unreachable database fails a request after this long (the API answers 503) instead of hanging.
DB_TIMEOUT_SECONDS = 3.0
# Connections the pool keeps open once opened: as many as threads may hold one at once (the API's worker threads,
# 40 in Starlette's pool, and the control plane's own: admission, dispatch, the sync, the lease, the sweeper). A
# connection beyond the pool is closed when given back, so a smaller pool opened and closed one for every read past
# it under load: SQLite a file and its pragmas (7 ms each with 50 tenants admitting in-process), PostgreSQL a server
# process. PostgreSQL's stays at the 40 it could reach before (the pool kept 10 and opened up to 30 more): two
# replicas within the server's default 100 connections.
SQLITE_POOL_CONNECTIONS = 56
PG_POOL_CONNECTIONS = 40
# A PostgreSQL connection given back to the pool less than this long ago is used again without a check; one idle
# longer is checked first (a round trip). PgBouncer's ``server_check_delay`` keeps the same default, for the same
# trade (pgbouncer/pgbouncer doc/config.md): a check on every use (SQLAlchemy's ``pool_pre_ping``) was one round trip
# in five of every admission.
PING_AFTER_IDLE_SECONDS = 30.0
_RELEASED_AT = "testbed_released_at"  # in a pooled connection's record: when it was last given back (monotonic)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # pysqlite's own transactions off: a write begins with BEGIN IMMEDIATE
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    cursor.execute(f"PRAGMA busy_timeout={int(DB_TIMEOUT_SECONDS * 1000)}")
    cursor.close()


def make_engine(url: str, clock: Clock = SYSTEM_CLOCK) -> Engine:
    """An engine for SQLite (WAL, shared across threads, no connection events: ``Database`` begins its writes with
    BEGIN IMMEDIATE itself) or any SQLAlchemy URL;
    ``clock`` times a PostgreSQL connection's idle spells (:func:`ping_when_idle`)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": DB_TIMEOUT_SECONDS},
            pool_size=SQLITE_POOL_CONNECTIONS,
            pool_timeout=DB_TIMEOUT_SECONDS,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
    elif url.startswith("postgresql"):
        ms = int(DB_TIMEOUT_SECONDS * 1000)
        engine = create_engine(
            url,
            pool_size=PG_POOL_CONNECTIONS,
            max_overflow=0,
            pool_timeout=DB_TIMEOUT_SECONDS,
            connect_args={
                "connect_timeout": int(DB_TIMEOUT_SECONDS),
                "options": f"-c lock_timeout={ms} -c statement_timeout={ms * 5}",
            },
        )
        prepare_repeated_statements(engine)  # before BEGIN is put in front: PREPARE goes outside it
        postgresql_begin_with_first_statement(engine)
        ping_when_idle(engine, PING_AFTER_IDLE_SECONDS, clock)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)
    return engine


def ping_when_idle(engine: Engine, idle_seconds: float, clock: Clock = SYSTEM_CLOCK) -> None:
    """Check a pooled connection before use only when it sat in the pool longer than ``idle_seconds`` (a server
    restart, a failover or a firewall's idle timeout may have closed it meanwhile); a dead one is replaced with
    every other connection opened before it, as ``pool_pre_ping`` would.

    A connection used moments ago is not checked: if the server went away in between, its transaction fails on its
    first statement (nothing written; the API answers 503), SQLAlchemy sees the disconnect and renews the whole
    pool, and the next transaction gets a new connection. A transaction in flight when the server goes fails the
    same way with or without a check."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _released(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RELEASED_AT] = clock.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        released = record.info.get(_RELEASED_AT)
        if released is None or clock.monotonic() - released <= idle_seconds:  # new, or given back moments ago
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.InvalidatePoolError(f"a pooled connection was closed while idle: {error}") from error
            raise


class DatabaseBusy(RuntimeError):
    """A write waited ``DB_TIMEOUT_SECONDS`` for its turn (the API answers 503)."""


class TimedLock:
    """The in-process writer queue, waited on no longer than the database itself would be."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=DB_TIMEOUT_SECONDS):
            raise DatabaseBusy(f"the database stayed locked for {DB_TIMEOUT_SECONDS:g} s")

    def __exit__(self, *_exc: object) -> None:
        self._lock.release()


class WriterQueue:
    """SQLite's one writer, queued for in this process, waited on no longer than the database itself would be.

    A group commit's leader (:class:`GroupCommit`: requests' writes, admissions and dispatches) goes before the
    background writers waiting with it (the sync's rounds, the money rounds, the lease), so a request waits behind
    at most the one background transaction already running, not a run of them: a plain lock is taken back by the
    thread that just released it (it holds the GIL), and the sync's short transactions came one after another."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._held = False
        self._leaders_waiting = 0
        self.waiting = 0  # threads waiting for their turn, leaders or not

    @contextmanager
    def held(self, leader: bool = False) -> Iterator[None]:
        """The writer, for a group commit's leader (``leader``) or a background write."""
        with self._changed:
            if not self._held and (leader or not self._leaders_waiting):
                self._held = True
            else:
                self._wait(leader)
        try:
            yield
        finally:
            with self._changed:
                self._held = False
                self._changed.notify_all()  # the waiters are few: one leader at most, and the background threads

    def _wait(self, leader: bool) -> None:
        """Wait for the writer's turn (``_changed`` held); :class:`DatabaseBusy` after ``DB_TIMEOUT_SECONDS``."""
        self._leaders_waiting += leader
        self.waiting += 1
        try:
            turn = self._changed.wait_for(
                lambda: not self._held and (leader or not self._leaders_waiting), DB_TIMEOUT_SECONDS
            )
        finally:
            self._leaders_waiting -= leader
            self.waiting -= 1
        if not turn:
            raise DatabaseBusy(f"the database stayed locked for {DB_TIMEOUT_SECONDS:g} s")
        self._held = True


class _PendingWrite:
    """Work waiting for a group commit, and its outcome; ``turn`` is set when it is done or its thread leads."""

    __slots__ = ("work", "context", "done", "lead", "result", "error", "turn")

    def __init__(self, work: Callable[[Session], Any]) -> None:
        self.work = work
        self.context = contextvars.copy_context()  # its thread's: the work runs as if that thread ran it
        self.done = False
        self.lead = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.turn = threading.Event()


class GroupCommit:
    """SQLite's one writer, shared: the work of every thread waiting to write runs in one transaction.

    One waiting thread leads: it opens the transaction (``transaction``: the writer's lock and ``BEGIN
    IMMEDIATE``), runs the batch in the order it came and commits; then it wakes each thread of the batch
    by its own event (the threads do not pass a lock along one by one, each waiting for the GIL) and hands
    the lead to the oldest thread still waiting. Each work runs in its own thread's context (``contextvars``:
    the acting token). If the batch fails, each work is run again alone, so a failing write fails no other
    thread's. A thread whose work was not taken up within
    ``DB_TIMEOUT_SECONDS`` gives up (:class:`DatabaseBusy`, nothing written); work taken up is waited for.
    """

    def __init__(self, transaction: Callable[[], ContextManager[Session]]) -> None:
        self._transaction = transaction
        self._guard = threading.Lock()
        self._pending: list[_PendingWrite] = []
        self._leading = False

    def run(self, work: Callable[[Session], Any]) -> Any:
        """``work``'s result once the transaction it ran in is committed, or the error it raised (nothing of it
        written)."""
        mine = _PendingWrite(work)
        with self._guard:
            self._pending.append(mine)
            mine.lead = not self._leading
            self._leading = True
        if not mine.lead and not mine.turn.wait(DB_TIMEOUT_SECONDS):
            with self._guard:
                if not mine.lead and mine in self._pending:  # never taken up: give up, nothing written
                    self._pending.remove(mine)
                    raise DatabaseBusy(f"the database stayed locked for {DB_TIMEOUT_SECONDS:g} s")
            mine.turn.wait()  # taken up by a batch (or handed the lead): it ends
        if not mine.done:
            self._lead()
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _lead(self) -> None:
        with self._guard:
            batch, self._pending = self._pending, []
        if not self._write(batch) and len(batch) > 1 and not isinstance(batch[0].error, DatabaseBusy):
            for pending in batch:  # the batch failed: each work alone, so one failing work fails no one else's
                self._write([pending])
        for pending in batch:
            pending.done = True
        with self._guard:
            after = self._pending[0] if self._pending else None
            if after is not None:
                after.lead = True
            else:
                self._leading = False
        for pending in batch:
            pending.turn.set()
        if after is not None:
            after.turn.set()

    def _write(self, batch: list[_PendingWrite]) -> bool:
        """Run the batch's work in one transaction, each in its own thread's context; whether it committed
        (if not, each work of the batch has the error)."""
        try:
            with self._transaction() as session:
                for pending in batch:
                    pending.result = pending.context.run(pending.work, session)
        except BaseException as exc:
            for pending in batch:
                pending.error = exc
            return False
        for pending in batch:
            pending.error = None
        return True


# INSERT ... ON CONFLICT of each supported dialect (one atomic statement, safe between replicas).
DIALECT_INSERTS: dict[str, Callable[[Table], PgInsert | SqliteInsert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def dialect_insert(session: Session, table: Table) -> PgInsert | SqliteInsert:
    """``INSERT`` with ``on_conflict_do_*`` for the session's database."""
    return DIALECT_INSERTS[session.get_bind().dialect.name](table)
