"""Audit rows written by the database layer itself, in the transaction of the write they record.

- every money-ledger entry (hold, charge, release, opening, adjustment) gets a ``ledger.<kind>`` row,
  whichever code path inserts it, and names the token that acted (``actor``) when a request is behind it;
- a job record written (admission) gets a ``job.admitted`` row naming the token;
- a job stopped by enforcement (the reconciler: max run time, grant exhausted, period ended) gets an
  ``enforcement.stop`` row with the reason; a job stopped through the API a ``job.stopped`` row naming the token.

The acting token comes from :data:`current_actor`, set by the control plane around a request's work.
A transaction's rows (each flush adds its own, in flush order) go into the audit inbox just before it commits,
in one INSERT that takes no lock; :func:`.audit.drain` links them into the chain in batches.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from contextvars import ContextVar
from typing import Any, Iterator

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, attributes

from operators.control_plane import audit
from operators.control_plane.audit import AuditKind
from operators.control_plane.audit_config import admission_detail
from operators.control_plane.db import commit_writes
from operators.control_plane.db.commit_writes import Write
from operators.control_plane.db.models import JobRow, MoneyLedgerRow
from operators.control_plane.db.store import Store

current_actor: ContextVar[str | None] = ContextVar("testbed_actor", default=None)
# The databases (URLs) of the control planes in this process: mapper events are global to a class, and a
# store on another database (a tool, a test on an older schema) writes no audit rows.
AUDITED_URLS: set[str] = set()
ACTOR_CHARS = 64  # money_ledger.actor
LEDGER_KINDS = {
    "hold": AuditKind.LEDGER_HOLD,
    "charge": AuditKind.LEDGER_CHARGE,
    "release": AuditKind.LEDGER_RELEASE,
    "opening": AuditKind.LEDGER_OPENING,
    "adjustment": AuditKind.LEDGER_ADJUSTMENT,
}


@contextmanager
def acting(actor: str) -> Iterator[None]:
    """Within it, ledger entries and audit rows written by this thread name ``actor``."""
    token = current_actor.set(actor)
    try:
        yield
    finally:
        current_actor.reset(token)


# The acting token is bound to a row when the change is made, not when it is flushed: a group commit flushes
# many threads' changes on one of them (``GroupCommit``), where ``current_actor`` is that thread's.
_ACTOR, _STOP_ACTOR = "testbed_actor", "testbed_stop_actor"  # InstanceState.info keys


def _bind_actor(_session: Session, row: Any) -> None:
    """A ledger entry or a job record added to a session: the token acting now is its actor."""
    actor = current_actor.get()
    if isinstance(row, MoneyLedgerRow) and row.actor is None and actor is not None:
        row.actor = actor[:ACTOR_CHARS]
    elif isinstance(row, JobRow):
        inspect(row).info[_ACTOR] = actor


def _bind_stop_actor(row: JobRow, value: Any, _old: Any, _initiator: Any) -> None:
    """A job's stop requested: the token acting now asked for it (none: the reconciler's enforcement)."""
    inspect(row).info[_STOP_ACTOR] = current_actor.get()


def _audited(connection: Any) -> bool:
    return _rendered(connection.engine.url) in AUDITED_URLS


@lru_cache(maxsize=64)
def _rendered(url: Any) -> str:
    """An engine's URL as ``install`` records it (rendered once per URL: every flush and admission asks)."""
    return str(url.render_as_string(hide_password=False))


Action = audit.Action


def ledger_entry(row: MoneyLedgerRow) -> Action:
    """The ``ledger.<kind>`` row of a ledger entry written (its id known)."""
    return LEDGER_KINDS.get(row.kind, f"ledger.{row.kind}"), {
        "tenant": row.tenant,
        "actor": row.actor,
        "job_id": row.job_id,
        "at": row.at,
        "detail": {
            "ledger_id": row.id,
            "amount_krw": row.amount_krw,
            "pool": row.pool,
            "price_id": row.price_id,
            "seconds": row.seconds,
            "gpu_seconds": row.gpu_seconds,
            "note": row.note,
        },
    }


def _job_stop(row: JobRow) -> Action | None:
    added = attributes.get_history(row, "stop_requested_at").added
    if not added or added[0] is None:
        return None
    actor = inspect(row).info.get(_STOP_ACTOR)
    if actor is None and (row.message or "").startswith("stopped:"):
        return AuditKind.ENFORCEMENT_STOP, {
            "tenant": row.tenant,
            "actor": "reconciler",
            "job_id": row.id,
            "detail": {"reason": row.message[:1000]},
        }
    if actor is not None:
        return AuditKind.JOB_STOPPED, {
            "tenant": row.tenant,
            "actor": actor,
            "job_id": row.id,
            "detail": {"status": row.status},
        }
    return None


def job_admitted(row: JobRow, actor: str | None) -> Action:
    """The ``job.admitted`` row of a job record written by ``actor``."""
    return AuditKind.JOB_ADMITTED, {
        "tenant": row.tenant,
        "actor": actor,
        "job_id": row.id,
        "at": row.submitted_at,
        "detail": admission_detail(row),
    }


_PENDING = "testbed_audit_pending"  # session.info: this transaction's audit rows, not yet appended


def _after_flush(session: Session, _context: Any) -> None:
    """The flush's audit rows, kept for the commit: job records written, ledger entries (oldest first), jobs
    stopped."""
    new, dirty = list(session.new), [o for o in session.dirty if isinstance(o, JobRow)]
    jobs = [o for o in new if isinstance(o, JobRow)]
    ledger = sorted((o for o in new if isinstance(o, MoneyLedgerRow)), key=lambda row: row.id)
    if not (jobs or ledger or dirty):
        return
    if not _audited(session.connection()):
        return
    stops = [action for action in map(_job_stop, dirty) if action is not None]
    admitted = [job_admitted(row, inspect(row).info.get(_ACTOR)) for row in jobs]
    _pend(session, [*admitted, *map(ledger_entry, ledger), *stops])


def record_at_commit(session: Session, actions: list[Action]) -> None:
    """Audit rows of writes made in ``session`` without the ORM, into the inbox with the rest as it commits."""
    if actions and _audited(session.connection()):
        _pend(session, actions)


def _pend(session: Session, actions: list[Action]) -> None:
    session.info.setdefault(_PENDING, []).extend(actions)


def _at_commit(session: Session) -> list[Write]:
    """The transaction's audit rows, into the inbox in one go as it commits (:mod:`.db.commit_writes`)."""
    actions = session.info.pop(_PENDING, None)
    return [audit.inbox_write(actions)] if actions else []


def _forget(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)


def install(store: Store) -> None:
    """Audit the writes to ``store``'s database (the listeners are installed once per process)."""
    AUDITED_URLS.add(_rendered(store.engine.url))
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "transient_to_pending", _bind_actor)
        event.listen(JobRow.stop_requested_at, "set", _bind_stop_actor)
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "after_soft_rollback", _forget)
    commit_writes.add(_at_commit)
