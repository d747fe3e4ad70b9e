"""Fewer round trips to PostgreSQL and less work in each (psycopg2): a transaction's ``BEGIN`` sent with its first
statement and its ``COMMIT`` with its last (:func:`postgresql_begin_with_first_statement`, :func:`commit_with`), and
the statements each connection repeats run as prepared statements (:func:`prepare_repeated_statements`)."""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

from sqlalchemy import Connection, event
from sqlalchemy.engine import CursorResult, Engine

# PostgreSQL plans every statement it is sent as text, each time: under the 50-tenant load the balance read's plan
# cost more than running it. A statement a connection has run this many times is prepared on it (PREPARE, then
# EXECUTE): psycopg 3's default ``prepare_threshold``, which does the same at the protocol level.
PREPARE_AFTER_EXECUTIONS = 5
PREPARED_PER_CONNECTION = 256  # at most, on one connection (each holds its plan in the server's memory)
_COUNTED_PER_CONNECTION = 4096  # statements counted towards being prepared, at most (then the counts start over)
_PREPARED = "testbed_prepared"  # in a pooled connection's record: its PreparedStatements

_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s")  # psycopg2's named parameter, as SQLAlchemy renders it
_COMMIT = ";COMMIT"  # what :func:`commit_with` appends: the statement before it is prepared, the COMMIT sent after
_unpreparable: set[str] = set()  # statements PostgreSQL refused to prepare (e.g. a parameter of no known type)
_prepared_somewhere: set[str] = set()  # statements a connection of this process has prepared

log = logging.getLogger(__name__)


def postgresql_begin_with_first_statement(engine: Engine) -> None:
    """Let this PostgreSQL (psycopg2) engine send a transaction's ``BEGIN`` with its first statement.

    psycopg2 sends ``BEGIN`` as a round trip of its own before a transaction's first statement; on a busy replica
    each round trip also waits for the GIL on its way back. Here its connections stay in autocommit: a statement
    run in a SQLAlchemy transaction while the server has none open gets ``BEGIN;`` in front of it (one query, one
    round trip), and the dialect's commit and rollback send ``COMMIT`` and ``ROLLBACK`` when the server has one
    open (libpq's own view of it: no round trip to ask). The pool's rollback on check-in is the dialect's too, so a
    connection given back with a transaction open, whatever went wrong, is rolled back there."""

    @event.listens_for(engine, "connect")
    def _autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.autocommit = True

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _with_begin(
        conn: Connection, cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
    ) -> tuple[str, Any]:
        if conn.in_transaction() and not _open(cursor.connection):
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


def _numbered(statement: str) -> tuple[str, list[str]]:
    """``statement`` with its ``%(name)s`` parameters as ``$1``, ``$2``... (one number per name), and the names in
    that order."""
    order: dict[str, int] = {}
    text = _PLACEHOLDER.sub(lambda m: f"${order.setdefault(m.group(1), len(order) + 1)}", statement)
    return text, list(order)


def prepare_repeated_statements(engine: Engine) -> None:
    """Run the statements each connection of this PostgreSQL (psycopg2) engine repeats as prepared statements
    (:class:`PreparedStatements`). Install it before :func:`postgresql_begin_with_first_statement`: its listener runs
    first, so ``BEGIN`` goes in front of whatever it sends."""

    @event.listens_for(engine, "connect")
    def _nothing_prepared(_dbapi_connection: Any, record: Any) -> None:
        record.info[_PREPARED] = PreparedStatements()  # a new server session (SQLAlchemy empties ``info`` on a new one)

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _prepared(
        conn: Connection, cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
    ) -> tuple[str, Any]:
        prepared = conn.info.get(_PREPARED)
        if prepared is not None and not executemany and isinstance(parameters, dict) and parameters:
            statement = prepared.execute_form(statement, cursor.connection)
        return statement, parameters


class PreparedStatements:
    """The statements one PostgreSQL connection has prepared, and how often it ran each of the others.

    A statement (its SQL text with psycopg2's ``%(name)s`` parameters) run :data:`PREPARE_AFTER_EXECUTIONS` times
    is prepared (``PREPARE tb_N AS`` the text with ``$1``, ``$2``...) and from then on sent as ``EXECUTE tb_N(...)``
    with the same parameters, which psycopg2 quotes as before: PostgreSQL parses and plans it once per connection,
    not on every run. ``PREPARE`` is sent only while the server has no transaction open on the connection (before the
    first statement of the next transaction, or one outside any): by the first connection of the process to prepare
    that statement as a round trip of its own, so a statement PostgreSQL refuses aborts nothing (it runs as text from
    then on, on every connection, and is logged); by any other in front of its next statement, in the same round
    trip (:meth:`_prepare_waiting`). A connection the pool opens again
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
    return conn.exec_driver_sql(sql + _COMMIT if autocommit else sql, params)
