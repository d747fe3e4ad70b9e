"""Writes sent together: what a transaction writes as it commits, after its last flush (the running balances its
ledger entries move, :mod:`.balances`, and its audit rows, :mod:`operators.control_plane.audit_hooks`), and an
admitted job's record with its hold (:mod:`operators.control_plane.admission_writes`).

On PostgreSQL writes sent together are one statement, each write but the last a data-modifying ``WITH`` of the
last: one round trip to the server instead of one each (a commit's writes took three, an admission's five). The
statement is compiled once per shape (which writes, how many rows each) and kept: a multi-row ``VALUES`` has no
cache key in SQLAlchemy, so it would be compiled anew on every commit. On SQLite the writes run one after the
other (in this process: no round trip to save), and so do writes of more than ``TOGETHER_ROWS`` rows (a sync batch,
a money round: their round trips are few for their rows, and each row count would be a shape of its own, compiled
and kept). Writes sent together write different tables and none reads what another writes, as parts of one
PostgreSQL statement must (they run on one snapshot).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from sqlalchemy import Connection, CursorResult, bindparam, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement

from operators.control_plane.db.pg_round_trips import commit_with

Write = tuple[Insert, list[dict[str, Any]]]  # an INSERT (ON CONFLICT ...) and its rows, each with the same keys
CommitPart = Callable[[Session], list[Write]]
Shape = tuple[tuple[Insert, tuple[str, ...], int], ...]  # each write's statement, its rows' keys, its row count

_PARTS: list[CommitPart] = []
TOGETHER_ROWS = 4  # rows per write at most for one statement: an admission's commit writes 1, 1 and 2


def add(part: CommitPart) -> None:
    """Run ``part`` as every session's transaction commits, after the parts added before it (once per process)."""
    if part not in _PARTS:
        _PARTS.append(part)
    if not event.contains(Session, "before_commit", _before_commit):
        event.listen(Session, "before_commit", _before_commit)


def _before_commit(session: Session) -> None:
    """The commit's writes, the last thing its transaction sends: on PostgreSQL the ``COMMIT`` goes with them (nothing
    may run in the transaction after them; no other ``before_commit`` listener is installed)."""
    session.flush()
    writes = [write for part in _PARTS for write in part(session)]
    if writes:
        execute_together(session.connection(), writes, commit=True)


def execute_together(
    conn: Connection, writes: list[Write], returning: ColumnElement[Any] | None = None, commit: bool = False
) -> CursorResult[Any] | None:
    """Run ``writes`` in ``conn``'s transaction, on PostgreSQL in one statement (each of up to ``TOGETHER_ROWS``
    rows); with ``returning`` (only then), that column of the last write's rows. ``commit``: the writes end the
    transaction, and on PostgreSQL its ``COMMIT`` is sent with them (one round trip: :func:`.pg_round_trips.commit_with`)."""
    writes = [(statement, rows) for statement, rows in writes if rows]
    if not writes:
        return None
    if conn.dialect.name != "postgresql" or any(len(rows) > TOGETHER_ROWS for _, rows in writes):
        if returning is not None:
            raise ValueError(f"writes sent together return rows on PostgreSQL only, of up to {TOGETHER_ROWS} rows")
        for statement, rows in writes:
            conn.execute(statement, rows)
        return None
    shape = tuple((statement, tuple(rows[0]), len(rows)) for statement, rows in writes)
    sql, processors = _together(conn.dialect, shape, returning)
    params = {
        f"w{i}_{r}_{key}": value
        for i, (_, rows) in enumerate(writes)
        for r, row in enumerate(rows)
        for key, value in row.items()
    }
    for name, process in processors:
        params[name] = process(params[name])
    if commit:
        return commit_with(conn, sql, params)
    return conn.exec_driver_sql(sql, params)


@lru_cache(maxsize=256)
def _together(
    dialect: Dialect, shape: Shape, returning: ColumnElement[Any] | None
) -> tuple[str, list[tuple[str, Callable[[Any], Any]]]]:
    """The statement of writes of this shape, compiled, and the parameters whose type converts them first."""
    statements: list[Insert] = []
    processors: list[tuple[str, Callable[[Any], Any]]] = []
    for i, (statement, keys, count) in enumerate(shape):
        rows = []
        for r in range(count):
            row = {}
            for key in keys:
                name, type_ = f"w{i}_{r}_{key}", statement.table.c[key].type
                row[key] = bindparam(name, type_=type_)
                process = type_.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors.append((name, process))
            rows.append(row)
        statements.append(statement.values(rows))
    *before, together = statements
    for i, statement in enumerate(before):
        together = together.add_cte(statement.cte(f"together_{i}"))
    if returning is not None:
        together = together.returning(returning)
    return str(together.compile(dialect=dialect)), processors
