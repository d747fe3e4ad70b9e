"""The money ledger: one append-only table of holds, charges, releases, openings and adjustments, in whole won.

Every balance follows from it alone: charged = openings + charges + adjustments; held = for each job
whose hold is not yet released, what is left of its hold (hold - its charges, never below 0);
remaining = grant - charged - held, never below 0. Admission reads these sums from the running balance
(:mod:`.balances`), kept in the transaction of every entry (``tests/money/test_running_balance.py`` sums the
ledger itself, what the running balance must equal).

- ``hold`` (admission): the job's maximum cost, its max run time x its spec x the prices in force,
  written in the same transaction as the job record, inside the tenant's database lock, so
  concurrent admissions on any replica never hold more than the balance.
- ``charge`` (the reconciler, every ``charge_interval_seconds``, and when the job ends): the whole
  seconds it ran since the last charge, split where a new price row comes into force; each entry is
  ``round_half_up(exact cost of everything charged so far) - already charged`` (``testbed.money``). The table is ``MoneyLedgerRow`` in :mod:`.models`.
  A job is charged under its record's row lock: the replica that ends it and the one that accrues it
  never both charge the same seconds.
- ``release`` (when the job ends): what is left of the hold.

Rows are never updated or deleted (corrections are ``adjustment`` rows).
"""

from __future__ import annotations

import logging
import math
import time
from fractions import Fraction
from typing import Any, Callable, Iterable

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session

from operators.control_plane.db.models import JobRow, MoneyBalanceRow, MoneyJobRow, MoneyLedgerRow
from operators.control_plane.db.pricing import JobShape, Hold, price_pieces
from operators.control_plane.db.held import TENANT_JOBS, TenantJobs, tenant_jobs_of
from operators.control_plane.db.store import Store
from testbed.config import StackConfig, Tenant
from testbed.money import (
    Enforcement,
    LedgerEntry,
    LedgerKind,
    Meter,
    TenantBalance,
    exact_cost,
    format_duration,
    round_half_up,
)

log = logging.getLogger("testbed.control_plane")


_BALANCE = MoneyBalanceRow.__table__
_RUNNING_BALANCE = select(
    _BALANCE.c.charged_krw, _BALANCE.c.charged_gpu_seconds, _BALANCE.c.held_krw, _BALANCE.c.held_gpu_seconds
).where(_BALANCE.c.tenant == bindparam("tenant"))
# Admission's reads in one statement: the tenant's jobs (how many wait, what the running ones hold) and its
# running balance (none before its first ledger entry: the outer join's NULLs).
_TENANT_JOBS = TENANT_JOBS.subquery()
_BALANCE_AND_JOBS = select(_TENANT_JOBS, *_RUNNING_BALANCE.selected_columns).select_from(
    _TENANT_JOBS.outerjoin(_BALANCE, _BALANCE.c.tenant == bindparam("tenant"))
)
_CHARGED = select(_BALANCE.c.tenant, _BALANCE.c.charged_krw).where(
    _BALANCE.c.tenant.in_(bindparam("tenants", expanding=True))
)
_JOBS = MoneyJobRow.__table__
_LEDGER = MoneyLedgerRow
# Jobs' charges so far, per price (what accruing more starts from), and their won per kind of entry.
_CHARGED_BY_PRICE = (
    select(
        _LEDGER.job_id,
        _LEDGER.price_id,
        func.sum(_LEDGER.seconds),
        func.sum(_LEDGER.amount_krw),
        func.sum(_LEDGER.cpu_milli_seconds),
        func.sum(_LEDGER.gpu_seconds),
        func.sum(_LEDGER.memory_mib_seconds),
    )
    .where(_LEDGER.job_id.in_(bindparam("job_ids", expanding=True)), _LEDGER.kind == LedgerKind.CHARGE.value)
    .group_by(_LEDGER.job_id, _LEDGER.price_id)
)
_SUMS_BY_KIND = (
    select(_LEDGER.job_id, _LEDGER.kind, func.sum(_LEDGER.amount_krw))
    .where(_LEDGER.job_id.in_(bindparam("job_ids", expanding=True)))
    .group_by(_LEDGER.job_id, _LEDGER.kind)
)
_JOB_MONEY = select(_JOBS.c.job_id, _JOBS.c.hold_krw, _JOBS.c.charged_krw).where(
    _JOBS.c.job_id.in_(bindparam("ids", expanding=True))
)


class MoneyLedger:
    """The ledger of one region's control plane: writes at admission and from the reconciler, reads for balances.

    ``pool_of(tenant)``: the price pool a tenant's jobs are priced in (``local`` in the embedded mode, the
    tenant's GPU pool in a cluster).
    """

    def __init__(self, store: Store, stack: StackConfig, pool_of: Callable[[Tenant], str]):
        self.store = store
        self.stack = stack
        self.pool_of = pool_of
        self.tenants: dict[str, Tenant] = {t.id: t for t in stack.tenants}
        self._prices = {p.id: p for p in stack.prices}

    def install(self) -> None:
        """Charge and release in the transaction that ends a job (once)."""
        if self.settle not in self.store.on_terminal:
            self.store.on_terminal.append(self.settle)

    def reload(self, stack: StackConfig) -> None:
        """Take a new stack (amended grants, new price rows)."""
        self.stack = stack
        self.tenants = {t.id: t for t in stack.tenants}
        self._prices = {p.id: p for p in stack.prices}

    # -- reads -------------------------------------------------------------------------------
    def entries(
        self,
        tenant: str | None = None,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[LedgerKind] | None = None,
        job_id: str | None = None,
    ) -> list[LedgerEntry]:
        """Ledger entries in order, filtered by tenant, time ``[since, until)``, kinds and job."""
        query = select(MoneyLedgerRow).order_by(MoneyLedgerRow.id)
        if tenant is not None:
            query = query.where(MoneyLedgerRow.tenant == tenant)
        if job_id is not None:
            query = query.where(MoneyLedgerRow.job_id == job_id)
        if since is not None:
            query = query.where(MoneyLedgerRow.at >= since)
        if until is not None:
            query = query.where(MoneyLedgerRow.at < until)
        if kinds is not None:
            query = query.where(MoneyLedgerRow.kind.in_([LedgerKind(k).value for k in kinds]))
        with self.store.session() as s:
            return [LedgerEntry.model_validate(row) for row in s.scalars(query)]

    def balances(self, now: float | None = None, tenants: Iterable[str] | None = None) -> dict[str, TenantBalance]:
        """Every configured tenant's balance (or those named), from the ledger alone."""
        ids = list(tenants) if tenants is not None else list(self.tenants)
        with self.store.read() as conn:
            return {tenant: self.read_balance(conn, tenant) for tenant in ids}

    def balance(self, tenant: str) -> "Balance":
        """One tenant's balance."""
        with self.store.read() as conn:
            return self.read_balance(conn, tenant)

    def charged(self, tenants: Iterable[str]) -> dict[str, int]:
        """Won charged per tenant (openings + charges + adjustments; as in its balance), from the running balances."""
        ids = list(tenants)
        if not ids:
            return {}
        with self.store.read() as conn:
            return {tenant: int(amount) for tenant, amount in conn.execute(_CHARGED, {"tenants": ids})}

    def job_money(self, job_ids: list[str]) -> dict[str, tuple[int, int]]:
        """(hold, charged) in won per job, from the jobs' running money."""
        if not job_ids:
            return {}
        with self.store.read() as conn:
            return {
                job_id: (int(hold), int(charged))
                for job_id, hold, charged in conn.execute(_JOB_MONEY, {"ids": job_ids})
            }

    def balance_and_jobs(self, tenant_id: str) -> tuple["Balance", TenantJobs]:
        """A tenant's balance, how many of its jobs wait and what its running ones hold, in one read."""
        with self.store.read() as conn:
            row = conn.execute(_BALANCE_AND_JOBS, {"tenant": tenant_id}).one()
        charged, charged_gpu, held, held_gpu = (int(value or 0) for value in row[5:])
        return self._balance(tenant_id, charged, charged_gpu, held, held_gpu), tenant_jobs_of(row)

    def read_balance(self, s: Session | Connection, tenant_id: str) -> "Balance":
        """A tenant's balance from its running balance (:mod:`.balances`: one row, kept with every entry)."""
        row = s.execute(_RUNNING_BALANCE, {"tenant": tenant_id}).first()
        charged, charged_gpu, held, held_gpu = row if row is not None else (0, 0, 0, 0)
        return self._balance(tenant_id, int(charged), int(charged_gpu), int(held), int(held_gpu))

    def holding(self, balance: "Balance", hold: Hold) -> "Balance":
        """``balance`` once ``hold`` is held too: what the running balance becomes with a hold admission writes."""
        return self._balance(
            balance.tenant,
            balance.charged_krw,
            balance.charged_gpu_seconds,
            balance.held_krw + hold.krw,
            balance.held_gpu_seconds + hold.gpu_seconds,
        )

    def _balance(self, tenant_id: str, charged: int, charged_gpu: int, held: int, held_gpu: int) -> "Balance":
        tenant = self.tenants.get(tenant_id)
        grant = tenant.grant if tenant is not None else None
        grant_krw = grant.krw if grant is not None else None
        enforcement = grant.enforcement if grant is not None else Enforcement.ADMIT_IF_FITS
        remaining = None if grant_krw is None else max(0, grant_krw - charged - held)
        overspend = 0
        if grant_krw is not None and enforcement == Enforcement.WARN:
            overspend = max(0, charged + held - grant_krw)
        return Balance(
            tenant=tenant_id,
            grant_krw=grant_krw,
            charged_krw=charged,
            held_krw=held,
            remaining_krw=remaining,
            overspend_krw=overspend,
            grant_gpu_hours=grant.gpu_hours if grant is not None else None,
            charged_gpu_hours=charged_gpu / 3600.0,
            enforcement=enforcement,
            charged_gpu_seconds=charged_gpu,
            held_gpu_seconds=held_gpu,
        )

    # -- admission -----------------------------------------------------------------------------
    def hold_for(self, tenant: Tenant, shape: JobShape, now: float) -> Hold:
        """The maximum cost of a job admitted now (priced as if it started now, each second at its price)."""
        pool = self.pool_of(tenant)
        gpu_seconds = shape.gpus * shape.max_runtime_seconds
        try:
            pieces = price_pieces(self.stack, pool, now, 0, shape.max_runtime_seconds)
        except KeyError:
            return Hold(0, gpu_seconds, pool, "", priced=False)
        exact = sum((exact_cost(shape.meter(p.end - p.start), p.price.rates) for p in pieces), Fraction(0))
        price_id = pieces[0].price.id if pieces else self.stack.price_for(pool, now).id
        return Hold(round_half_up(exact), gpu_seconds, pool, price_id, priced=True)

    def record_hold(self, job_id: str, tenant: str, hold: Hold, shape: JobShape, now: float) -> None:
        """The hold entry, in the caller's transaction (admission's tenant lock)."""
        with self.store.write_session() as s:
            s.add(self.hold_row(job_id, tenant, hold, shape, now))

    @staticmethod
    def hold_row(job_id: str, tenant: str, hold: Hold, shape: JobShape, now: float) -> "MoneyLedgerRow":
        """The hold entry of an admitted job, for the caller to write with the job's record."""
        note = (
            f"max cost: {format_duration(shape.max_runtime_seconds)} x {shape.cpus:g} CPUs, "
            f"{shape.gpus} GPUs, {shape.memory_bytes / 2**30:g} GiB"
        )
        return _job_entry(LedgerKind.HOLD, job_id, tenant, now, hold.krw, note, pool=hold.pool, price_id=hold.price_id)

    # -- charges ---------------------------------------------------------------------------------
    def accrue(self, s: Session, row: JobRow, until: float, now: float) -> int:
        """Charge a job (its row locked in ``s``) for its whole seconds up to ``until`` not charged yet; won charged.

        Never beyond its max run time. Idempotent: the seconds already charged are read from the ledger.
        """
        entries = self._charges(row, _charged_by_price(s, [row.id]).get(row.id, []), until, now)
        s.add_all(entries)
        return sum(entry.amount_krw for entry in entries)

    def _charges(self, row: JobRow, done: list[Any], until: float, now: float) -> list[MoneyLedgerRow]:
        """The charge entries that bring a job's charges (``done``: its sums per price so far) up to ``until``."""
        if row.started_at is None:
            return []
        tenant = self.tenants.get(row.tenant)
        if tenant is None:
            return []
        shape = JobShape.of(row)
        limit = row.started_at + shape.max_runtime_seconds if shape.max_runtime_seconds else until
        total = int(math.floor(max(0.0, min(until, limit) - row.started_at)))
        covered = sum(int(r[1] or 0) for r in done)
        if total <= covered:
            return []
        pool = self.pool_of(tenant)
        try:
            pieces = price_pieces(self.stack, pool, row.started_at, covered, total)
        except KeyError:
            return []  # no price: money is off for this pool
        charged = sum(int(r[2] or 0) for r in done)
        exact = Fraction(0)
        for price_id, _sec, _amount, cpu, gpu, mem in done:
            price = self._prices.get(price_id or "")
            if price is None:
                log.error("ledger names price %s that the stack file no longer has; job %s", price_id, row.id)
                return []
            exact += exact_cost(
                Meter(cpu_milli_seconds=int(cpu), gpu_seconds=int(gpu), memory_mib_seconds=int(mem)), price.rates
            )
        entries = []
        for piece in pieces:
            meter = shape.meter(piece.end - piece.start)
            exact += exact_cost(meter, piece.price.rates)
            amount = round_half_up(exact) - charged
            charged += amount
            note = f"seconds {piece.start}-{piece.end} of the run"
            entries.append(
                _job_entry(
                    LedgerKind.CHARGE,
                    row.id,
                    row.tenant,
                    now,
                    amount,
                    note,
                    pool=pool,
                    price_id=piece.price.id,
                    seconds=piece.end - piece.start,
                    meter=meter,
                )
            )
        return entries

    def settle(self, s: Session, rows: list[JobRow]) -> None:
        """``Store.on_terminal`` hook: each job's last charge (to its end) and the release of what is left of its
        hold, for all the jobs that end in ``s``'s transaction at once (two reads, one flush)."""
        now = time.time()
        ids = [row.id for row in rows]
        done, sums = _charged_by_price(s, ids), _sums_by_kind(s, ids)
        charges = {
            row.id: self._charges(row, done.get(row.id, []), row.ended_at if row.ended_at is not None else now, now)
            for row in rows
        }
        releases = []
        for row in rows:
            charged = sum(entry.amount_krw for entry in charges[row.id])
            note = f"job {row.status.lower()}: the rest of its hold"
            releases.append(_release_entry(row, sums.get(row.id, {}), charged, now, note))
        # every charge before every release: the ledger's order (its ids) folds each job's charge before its release
        s.add_all([entry for row in rows for entry in charges[row.id]])
        s.add_all([entry for entry in releases if entry is not None])

    def release(self, s: Session, row: JobRow, now: float, note: str) -> bool:
        """Release what is left of a job's hold (its row locked in ``s``), once; whether a release was written."""
        entry = _release_entry(row, _sums_by_kind(s, [row.id]).get(row.id, {}), 0, now, note)
        if entry is not None:
            s.add(entry)
        return entry is not None


def _charged_by_price(s: Session, job_ids: list[str]) -> dict[str, list[Any]]:
    """Job id -> its charges so far, a row per price: (price id, seconds, won, CPU milli-s, GPU-s, memory MiB-s)."""
    out: dict[str, list[Any]] = {}
    for job_id, *sums in s.execute(_CHARGED_BY_PRICE, {"job_ids": job_ids}):
        out.setdefault(job_id, []).append(tuple(sums))
    return out


def _sums_by_kind(s: Session, job_ids: list[str]) -> dict[str, dict[str, int]]:
    """Job id -> won of its ledger entries per kind."""
    out: dict[str, dict[str, int]] = {}
    for job_id, kind, amount in s.execute(_SUMS_BY_KIND, {"job_ids": job_ids}):
        out.setdefault(job_id, {})[kind] = int(amount or 0)
    return out


def _release_entry(row: JobRow, sums: dict[str, int], charging: int, now: float, note: str) -> MoneyLedgerRow | None:
    """The release of what is left of a job's hold (``sums``: its won per kind so far, ``charging``: won of charges
    written with it), or None: no hold, or released already."""
    if LedgerKind.HOLD.value not in sums or LedgerKind.RELEASE.value in sums:
        return None
    left = max(0, sums[LedgerKind.HOLD.value] - sums.get(LedgerKind.CHARGE.value, 0) - charging)
    return _job_entry(LedgerKind.RELEASE, row.id, row.tenant, now, left, note)


def _job_entry(
    kind: LedgerKind,
    job_id: str,
    tenant: str,
    at: float,
    amount_krw: int,
    note: str,
    pool: str | None = None,
    price_id: str | None = None,
    seconds: int = 0,
    meter: Meter | None = None,
) -> MoneyLedgerRow:
    """A job's ledger entry (hold, charge, release); ``meter``: what a charge is for."""
    return MoneyLedgerRow(
        at=at,
        tenant=tenant,
        job_id=job_id,
        kind=kind.value,
        amount_krw=amount_krw,
        pool=pool,
        price_id=price_id,
        seconds=seconds,
        cpu_milli_seconds=meter.cpu_milli_seconds if meter is not None else 0,
        gpu_seconds=meter.gpu_seconds if meter is not None else 0,
        memory_mib_seconds=meter.memory_mib_seconds if meter is not None else 0,
        actor=None,
        note=note,
    )


class Balance(TenantBalance):
    """A balance with the GPU-seconds the checks need (not part of the API's view)."""

    charged_gpu_seconds: int = 0
    held_gpu_seconds: int = 0
