"""Running balances: each tenant's charged and held amounts, kept in the transaction of every money-ledger entry.

The ledger (:mod:`.money`) stays the record; this is a projection of it, so that admission reads a balance
in one row instead of summing a tenant's whole history. It follows the ledger's own rules:

- charged = openings + charges + adjustments (won and GPU-seconds);
- held = for each job with a hold and no release: its hold less its charges, never below 0 (won), and its
  GPUs x its max run time less the GPU-seconds charged, never below 0.

:func:`install` keeps it: the ledger entries a transaction writes (each flush adds its own, oldest first) are
folded just before it commits, in one go, into ``money_jobs`` (the job's hold, charges and release), and each
tenant's ``money_balances`` row moves by what the transaction added (increments, so replicas that write at once
both count; last, so the shared rows are locked only for the commit). Nothing reads these tables inside a
transaction that writes the ledger (the ledger's own sums serve charges and releases). 0008_balances builds it from the ledger with :func:`rebuild`; a test
checks it against the ledger's sums after every kind of entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Iterable

from sqlalchemy import Connection, delete, event, select
from sqlalchemy.orm import Session

from operators.control_plane.db import commit_writes
from operators.control_plane.db.commit_writes import Write
from operators.control_plane.db.engine import DIALECT_INSERTS
from operators.control_plane.db.models import JobRow, MoneyBalanceRow, MoneyJobRow, MoneyLedgerRow
from testbed.money import LedgerKind

CHARGED_KINDS = (
    LedgerKind.OPENING.value,
    LedgerKind.CHARGE.value,
    LedgerKind.ADJUSTMENT.value,
)  # what counts as charged
JOB_KINDS = (LedgerKind.HOLD.value, LedgerKind.CHARGE.value, LedgerKind.RELEASE.value)  # what moves a job's hold


@dataclass
class JobMoney:
    """One job's money so far (a ``money_jobs`` row)."""

    job_id: str
    tenant: str
    held: bool = False
    released: bool = False
    hold_krw: int = 0
    gpu_need_seconds: int = 0
    charged_krw: int = 0
    charged_gpu_seconds: int = 0

    def left(self) -> tuple[int, int]:
        """(won, GPU-seconds) the job still holds: nothing once released or without a hold."""
        if not self.held or self.released:
            return 0, 0
        return max(0, self.hold_krw - self.charged_krw), max(0, self.gpu_need_seconds - self.charged_gpu_seconds)


@dataclass
class BalanceDelta:
    """What a tenant's ``money_balances`` row moves by."""

    charged_krw: int = 0
    charged_gpu_seconds: int = 0
    held_krw: int = 0
    held_gpu_seconds: int = 0


@dataclass
class Fold:
    """Ledger entries folded in order: the jobs they changed and each tenant's delta."""

    jobs: dict[str, JobMoney] = field(default_factory=dict)
    deltas: dict[str, BalanceDelta] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)

    def add(self, entry: Any, gpu_need_seconds: int = 0) -> None:
        """Fold one entry (kind, tenant, job_id, amount_krw, gpu_seconds); ``gpu_need_seconds``: a hold's job's
        GPUs x max run time."""
        delta = self.deltas.setdefault(entry.tenant, BalanceDelta())
        if entry.kind in CHARGED_KINDS:
            delta.charged_krw += int(entry.amount_krw)
            delta.charged_gpu_seconds += int(entry.gpu_seconds or 0)
        if entry.job_id is None or entry.kind not in JOB_KINDS:
            return
        job = self.jobs.setdefault(entry.job_id, JobMoney(entry.job_id, entry.tenant))
        before = job.left()
        if entry.kind == LedgerKind.HOLD.value:
            job.held = True
            job.hold_krw += int(entry.amount_krw)
            job.gpu_need_seconds = gpu_need_seconds
        elif entry.kind == LedgerKind.CHARGE.value:
            job.charged_krw += int(entry.amount_krw)
            job.charged_gpu_seconds += int(entry.gpu_seconds or 0)
        else:
            job.released = True
        after = job.left()
        # a job's money moves its own tenant's held amount (the ledger sums a tenant's entries by job)
        held = self.deltas.setdefault(job.tenant, BalanceDelta())
        held.held_krw += after[0] - before[0]
        held.held_gpu_seconds += after[1] - before[1]
        self.changed.add(job.job_id)


def gpu_need(gpus: int | None, spec: dict[str, Any] | None) -> int:
    """A job's GPU-seconds at most: its GPUs x its max run time."""
    return int(gpus or 0) * int((spec or {}).get("max_runtime_seconds") or 0)


def folded(conn: Connection, entries: list[Any], new_jobs: dict[str, JobRow]) -> Fold:
    """``entries`` folded onto their jobs' money so far (read in ``conn``'s transaction; a new job has none)."""
    fold = Fold()
    ids = sorted({e.job_id for e in entries if e.job_id is not None} - new_jobs.keys())
    if ids:
        cols = [getattr(MoneyJobRow.__table__.c, f.name) for f in fields(JobMoney)]
        for row in conn.execute(select(*cols).where(MoneyJobRow.__table__.c.job_id.in_(ids))):
            fold.jobs[row.job_id] = JobMoney(*row)
    needs = _gpu_needs(conn, [e.job_id for e in entries if e.kind == LedgerKind.HOLD.value and e.job_id], new_jobs)
    for entry in entries:
        fold.add(entry, needs.get(entry.job_id, 0) if entry.job_id else 0)
    return fold


def _gpu_needs(conn: Connection, job_ids: list[str], new_jobs: dict[str, JobRow]) -> dict[str, int]:
    wanted = set(job_ids)
    out = {job_id: gpu_need(row.gpus, row.spec) for job_id, row in new_jobs.items() if job_id in wanted}
    missing = [job_id for job_id in job_ids if job_id not in out]
    if missing:
        jobs = JobRow.__table__
        query = select(jobs.c.id, jobs.c.gpus, jobs.c.spec).where(jobs.c.id.in_(missing))
        out.update({job_id: gpu_need(gpus, spec) for job_id, gpus, spec in conn.execute(query)})
    return out


def _job_writes(dialect: str, fold: Fold) -> list[Write]:
    if not fold.changed:
        return []
    return [(_jobs_upsert(dialect), [vars(fold.jobs[job_id]) for job_id in sorted(fold.changed)])]


def _balance_writes(dialect: str, deltas: dict[str, BalanceDelta]) -> list[Write]:
    moved = {tenant: d for tenant, d in deltas.items() if d != BalanceDelta()}
    if not moved:
        return []
    # in one order (the tenants sorted): writers never wait on each other's rows in a cycle
    return [(_balances_upsert(dialect), [{"tenant": tenant, **vars(moved[tenant])} for tenant in sorted(moved)])]


@lru_cache(maxsize=None)
def _jobs_upsert(dialect: str) -> Any:
    """A job's money, written whole."""
    insert = DIALECT_INSERTS[dialect](MoneyJobRow.__table__)
    names = [f.name for f in fields(JobMoney) if f.name != "job_id"]
    return insert.on_conflict_do_update(index_elements=["job_id"], set_={n: insert.excluded[n] for n in names})


@lru_cache(maxsize=None)
def _balances_upsert(dialect: str) -> Any:
    """A tenant's balance moved by increments (``x = x + delta``): concurrent writers both count."""
    table = MoneyBalanceRow.__table__
    insert = DIALECT_INSERTS[dialect](table)
    names = [f.name for f in fields(BalanceDelta)]
    return insert.on_conflict_do_update(
        index_elements=["tenant"], set_={n: table.c[n] + insert.excluded[n] for n in names}
    )


_ENTRIES = "testbed_ledger_entries"  # session.info: this transaction's ledger entries and new job records


def _after_flush(session: Session, _context: Any) -> None:
    entries = sorted((o for o in session.new if isinstance(o, MoneyLedgerRow)), key=lambda row: row.id)
    if entries:
        fold_at_commit(session, entries, {o.id: o for o in session.new if isinstance(o, JobRow)})


def fold_at_commit(session: Session, entries: list[Any], new_jobs: dict[str, JobRow]) -> None:
    """Ledger entries written in ``session``'s transaction (oldest first; ``new_jobs``: job records it wrote), to be
    folded with the rest as it commits (the ORM's flushes add theirs; writes without the ORM call this)."""
    pending_entries, pending_jobs = session.info.setdefault(_ENTRIES, ([], {}))
    pending_entries.extend(entries)
    pending_jobs.update(new_jobs)


def _at_commit(session: Session) -> list[Write]:
    """The transaction's entries fold into ``money_jobs`` and the balances move, last, as it commits
    (:mod:`.commit_writes`): the balance rows (one per tenant, shared by every writer) are locked only for the commit."""
    pending = session.info.pop(_ENTRIES, None)
    if not pending:
        return []
    conn = session.connection()
    fold = folded(conn, pending[0], pending[1])
    return [*_job_writes(conn.dialect.name, fold), *_balance_writes(conn.dialect.name, fold.deltas)]


def _forget(session: Session, _previous: Any) -> None:
    session.info.pop(_ENTRIES, None)


def install() -> None:
    """Keep the running balances in every transaction of every session (once per process)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "after_soft_rollback", _forget)
    commit_writes.add(_at_commit)


def rebuild(conn: Connection, tenants: Iterable[str] | None = None) -> None:
    """Recompute the running balances from the ledger alone (all tenants, or those named), in ``conn``'s
    transaction: what 0008_balances does, and the check a test makes."""
    ledger, jobs_money, balances = MoneyLedgerRow.__table__, MoneyJobRow.__table__, MoneyBalanceRow.__table__
    names = None if tenants is None else list(tenants)
    for table in (jobs_money, balances):
        conn.execute(delete(table) if names is None else delete(table).where(table.c.tenant.in_(names)))
    query = select(ledger.c.kind, ledger.c.tenant, ledger.c.job_id, ledger.c.amount_krw, ledger.c.gpu_seconds)
    query = query.order_by(ledger.c.id)
    entries = list(conn.execute(query if names is None else query.where(ledger.c.tenant.in_(names))))
    needs = _gpu_needs(conn, [e.job_id for e in entries if e.kind == LedgerKind.HOLD.value and e.job_id], {})
    fold = Fold()
    for entry in entries:
        fold.add(entry, needs.get(entry.job_id, 0) if entry.job_id else 0)
    commit_writes.execute_together(
        conn, [*_job_writes(conn.dialect.name, fold), *_balance_writes(conn.dialect.name, fold.deltas)]
    )
