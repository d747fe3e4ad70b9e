"""The database engine of the control plane (SQLite with WAL, or PostgreSQL) and what every caller of it shares:
the time a locked database is waited for, the in-process writer queue, and INSERT ... ON CONFLICT per dialect."""

from __future__ import annotations

import contextvars
import logging
import re
import threading
from contextlib import contextmanager
from typing import Any, Callable, ContextManager, Iterator

from sqlalchemy import Connection, Table, create_engine, event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.orm import Session

from operators.control_plane.db.migrate import sqlite_immediate
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
# PostgreSQL plans every statement it is sent as text, each time: under the 50-tenant load the balance read's plan
# cost more than running it. A statement a connection has run this many times is prepared on it (PREPARE, then
# EXECUTE): psycopg 3's default ``prepare_threshold``, which does the same at the protocol level.
PREPARE_AFTER_EXECUTIONS = 5
PREPARED_PER_CONNECTION = 256  # at most, on one connection (each holds its plan in the server's memory)
_COUNTED_PER_CONNECTION = 4096  # statements counted towards being prepared, at most (then the counts start over)
_PREPARED = "testbed_prepared"  # in a pooled connection's record: its PreparedStatements

log = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    cursor.execute(f"PRAGMA busy_timeout={int(DB_TIMEOUT_SECONDS * 1000)}")
    cursor.close()


def make_engine(url: str, clock: Clock = SYSTEM_CLOCK) -> Engine:
    """An engine for SQLite (WAL, shared across threads, BEGIN IMMEDIATE for writes) or any SQLAlchemy URL;
    ``clock`` times a PostgreSQL connection's idle spells (:func:`ping_when_idle`)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": DB_TIMEOUT_SECONDS},
            pool_size=SQLITE_POOL_CONNECTIONS,
            pool_timeout=DB_TIMEOUT_SECONDS,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        sqlite_immediate(engine)
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
        postgresql_begin_with_first_statement(engine, prepare=True)
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


def postgresql_begin_with_first_statement(engine: Engine, prepare: bool = False) -> None:
    """Let this PostgreSQL (psycopg2) engine send a transaction's ``BEGIN`` with its first statement; with
    ``prepare``, also run the statements each connection repeats as prepared statements (:class:`PreparedStatements`).

    psycopg2 sends ``BEGIN`` as a round trip of its own before a transaction's first statement; on a busy replica
    each round trip also waits for the GIL on its way back. Here its connections stay in autocommit: a statement
    run in a SQLAlchemy transaction while the server has none open gets ``BEGIN;`` in front of it (one query, one
    round trip), and the dialect's commit and rollback send ``COMMIT`` and ``ROLLBACK`` when the server has one
    open (libpq's own view of it: no round trip to ask). The pool's rollback on check-in is the dialect's too, so a
    connection given back with a transaction open, whatever went wrong, is rolled back there."""

    @event.listens_for(engine, "connect")
    def _autocommit(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.autocommit = True
        if prepare:  # a new server session, nothing prepared on it (SQLAlchemy empties ``info`` when it replaces one)
            record.info[_PREPARED] = PreparedStatements()

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _with_begin(
        conn: Connection, cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
    ) -> tuple[str, Any]:
        raw = cursor.connection
        prepared = conn.info.get(_PREPARED) if prepare and not executemany else None
        if prepared is not None and isinstance(parameters, dict) and parameters:
            statement = prepared.execute_form(statement, raw)
        if conn.in_transaction() and not _open(raw):
            if executemany:  # one statement run for many rows: BEGIN cannot ride on it
                cursor.execute("BEGIN")
            else:
                statement = "BEGIN;" + statement
        return statement, parameters

    def _end(command: str, psycopg2_end: Callable[[Any], None]) -> Callable[[Any], None]:
        def end(dbapi_connection: Any) -> None:
            raw = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
            if not raw.autocommit:  # not yet switched (the dialect's first queries on a new connection): psycopg2's
                psycopg2_end(dbapi_connection)
            elif _open(raw):
                with raw.cursor() as cursor:
                    cursor.execute(command)

        return end

    # Errors raised here are SQLAlchemy's to handle as any commit's or rollback's (a lost connection invalidated).
    dialect = engine.dialect
    dialect.do_commit = _end("COMMIT", dialect.do_commit)  # type: ignore[method-assign]
    dialect.do_rollback = _end("ROLLBACK", dialect.do_rollback)  # type: ignore[method-assign]


def _open(psycopg2_connection: Any) -> bool:
    """Whether the server has a transaction open on this connection (libpq's status: idle is 0)."""
    return bool(psycopg2_connection.info.transaction_status)


_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s")  # psycopg2's named parameter, as SQLAlchemy renders it
_COMMIT = ";COMMIT"  # what :func:`commit_with` appends: the statement before it is prepared, the COMMIT sent after
_unpreparable: set[str] = set()  # statements PostgreSQL refused to prepare (e.g. a parameter of no known type)
_prepared_somewhere: set[str] = set()  # statements a connection of this process has prepared


def _numbered(statement: str) -> tuple[str, list[str]]:
    """``statement`` with its ``%(name)s`` parameters as ``$1``, ``$2``... (one number per name), and the names in
    that order."""
    order: dict[str, int] = {}
    text = _PLACEHOLDER.sub(lambda m: f"${order.setdefault(m.group(1), len(order) + 1)}", statement)
    return text, list(order)


class PreparedStatements:
    """The statements one PostgreSQL connection has prepared, and how often it ran each of the others.

    A statement (its SQL text with psycopg2's ``%(name)s`` parameters) run :data:`PREPARE_AFTER_EXECUTIONS` times
    is prepared (``PREPARE tb_N AS`` the text with ``$1``, ``$2``...) and from then on sent as ``EXECUTE tb_N(...)``
    with the same parameters, which psycopg2 quotes as before: PostgreSQL parses and plans it once per connection,
    not on every run. ``PREPARE`` is sent only while the server has no transaction open on the connection (the first
    statement of the next transaction, or one outside any), as a round trip of its own: a statement it refuses
    aborts nothing, runs as text from then on (on every connection) and is logged. A connection the pool opens again
    is a new server session and starts with nothing prepared. ``DEALLOCATE`` is never needed: a connection prepares
    at most :data:`PREPARED_PER_CONNECTION` statements, and its server session frees them when it ends."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # statement -> what runs it: EXECUTE tb_N(...)
        self._runs: dict[str, int] = {}
        self._waiting: list[str] = []  # run often enough while a transaction was open: prepared at the next chance

    def execute_form(self, statement: str, raw: Any) -> str:
        """What to send for ``statement`` on the psycopg2 connection ``raw``: ``EXECUTE`` once it is prepared, after
        any ``PREPARE`` that waited for the server to have no transaction open."""
        commit = statement.endswith(_COMMIT)
        body = statement[: -len(_COMMIT)] if commit else statement
        if body not in self._names:
            self._count(body)
        prepare = self._prepare_waiting(raw) if self._waiting and not _open(raw) else ""
        execute = self._names.get(body)
        if execute is None:
            return prepare + statement
        return prepare + (execute + _COMMIT if commit else execute)

    def _count(self, body: str) -> None:
        if body in _unpreparable or len(self._names) + len(self._waiting) >= PREPARED_PER_CONNECTION:
            return
        if len(self._runs) >= _COUNTED_PER_CONNECTION:
            self._runs.clear()
        runs = self._runs[body] = self._runs.get(body, 0) + 1
        if runs == PREPARE_AFTER_EXECUTIONS:
            self._waiting.append(body)

    def _prepare_waiting(self, raw: Any) -> str:
        """Prepare every waiting statement (the server has no transaction open on ``raw``); what to send in front of
        the next statement. A statement no connection has prepared yet is prepared in a round trip of its own, so
        that a refusal fails nothing else; one another connection prepared goes in front of the next statement (the
        same round trip: a prepared statement outlives the transaction it was made in, rolled back or not)."""
        waiting, self._waiting = self._waiting, []
        along = []
        for body in waiting:
            text, order = _numbered(body)
            name = f"tb_{len(self._names) + 1}"
            prepare = f"PREPARE {name} AS {text}"  # psycopg2's text: a literal % doubled, as its parameters need
            if body in _prepared_somewhere:
                along.append(prepare + ";")
            else:
                try:
                    with raw.cursor() as cursor:
                        cursor.execute(prepare.replace("%%", "%"))  # sent without parameters: sent as it is
                except raw.OperationalError:  # the connection failed: the statement itself will say so, as usual
                    return "".join(along)
                except raw.Error as error:
                    _unpreparable.add(body)
                    log.warning("PostgreSQL would not prepare a statement (it runs as text): %s", str(error).strip())
                    continue
                _prepared_somewhere.add(body)
            arguments = ", ".join(f"%({parameter})s" for parameter in order)
            self._names[body] = f"EXECUTE {name}({arguments})"
        return "".join(along)


def commit_with(conn: Connection, sql: str, params: dict[str, Any]) -> CursorResult[Any]:
    """Run ``sql`` as the last statement of ``conn``'s transaction, with the transaction's ``COMMIT`` in the same
    query (on a :func:`postgresql_begin_with_first_statement` engine, whose connections are in autocommit; on any
    other the commit comes as usual). Nothing may run in the transaction after it: it has ended once this returns,
    and the commit SQLAlchemy makes next finds nothing open to send ``COMMIT`` for."""
    autocommit = conn.dialect.name == "postgresql" and conn.connection.dbapi_connection.autocommit  # type: ignore[union-attr]
    return conn.exec_driver_sql(sql + ";COMMIT" if autocommit else sql, params)


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
