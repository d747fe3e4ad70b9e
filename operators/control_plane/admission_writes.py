"""An admitted job's writes, without the ORM: its record, its hold, the hold's running money and their audit rows.

Admission is the hottest write of the control plane (on SQLite, the group commit's writer runs every waiting
admission's). The rows are built before the writer is taken and written by prebuilt Core statements (on
PostgreSQL the record and its hold in one statement: one round trip); the running balance and the audit rows
join the transaction's own, moved and recorded once as it commits (:func:`.db.balances.fold_at_commit`,
:func:`.audit_hooks.record_at_commit`, written together by :mod:`.db.commit_writes`): the same rows the ORM path
and its hooks write (``tests/money/test_running_balance.py`` checks the balances against the ledger,
``tests/control_plane/test_audit.py`` the audit rows).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from operators.control_plane.audit_hooks import ACTOR_CHARS, current_actor, job_admitted, ledger_entry, record_at_commit
from operators.control_plane.db import balances
from operators.control_plane.db.commit_writes import execute_together
from operators.control_plane.db.models import JobRow, MoneyLedgerRow
from operators.control_plane.db.store import Store

_INSERT_JOB = insert(JobRow.__table__)
_INSERT_ENTRY = insert(MoneyLedgerRow.__table__)
_ENTRY_ID = MoneyLedgerRow.__table__.c.id


_NO_DEFAULT = object()  # a column with no scalar default


@lru_cache(maxsize=None)
def _columns(table: Table) -> tuple[tuple[str, Any, bool], ...]:
    """Each column of ``table``: (its attribute, its scalar default or :data:`_NO_DEFAULT`, whether it is in the key)."""
    return tuple(
        (
            column.key,
            column.default.arg if column.default is not None and column.default.is_scalar else _NO_DEFAULT,
            column.primary_key,
        )
        for column in table.columns
    )


def _values(row: Any) -> dict[str, Any]:
    """A new row's columns, each unset one given its default (on the row too, as a flush would). Read from the
    row's own dict: the instrumented attributes cost more than the statement (two rows an admission)."""
    values = {}
    given = row.__dict__  # a new object's attributes set so far (an unset column is not there: None)
    for key, default, primary_key in _columns(row.__table__):
        value = given.get(key)
        if value is None and default is not _NO_DEFAULT:
            value = default
            setattr(row, key, value)
        if value is not None or not primary_key:
            values[key] = value
    return values


def write_admission(store: Store, job: JobRow, hold: MoneyLedgerRow | None) -> None:
    """Write an admitted job's record and its hold (if priced) durably, in one transaction (on SQLite a group
    commit); returns once committed (or raises: nothing written). ``hold.id`` is set."""
    actor = current_actor.get()
    if hold is not None and hold.actor is None and actor is not None:
        hold.actor = actor[:ACTOR_CHARS]
    job_values = _values(job)
    hold_values = _values(hold) if hold is not None else {}

    def work(session: Session) -> None:
        conn = session.connection()
        actions = [job_admitted(job, actor)]
        if hold is None:
            conn.execute(_INSERT_JOB, job_values)
        elif conn.dialect.name == "postgresql":  # the record and its hold in one round trip
            writes = [(_INSERT_JOB, [job_values]), (_INSERT_ENTRY, [hold_values])]
            written = execute_together(conn, writes, returning=_ENTRY_ID)
            assert written is not None  # PostgreSQL returns the hold's id
            hold.id = written.scalar_one()
        else:
            conn.execute(_INSERT_JOB, job_values)
            hold.id = conn.execute(_INSERT_ENTRY, hold_values).inserted_primary_key[0]
        if hold is not None:
            balances.fold_at_commit(session, [hold], {job.id: job})
            actions.append(ledger_entry(hold))
        record_at_commit(session, actions)

    store.group_write(work)
