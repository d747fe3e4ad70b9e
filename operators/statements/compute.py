"""A month's statement computed from the money ledger (the only source), as :mod:`testbed.statements` models.

Which month an entry belongs to: its Asia/Seoul month, unless that month was closed before the entry
was written (its id is above the close's ``last_ledger_id``): then it is a correction and counts in
the next month that was still open when it was written (an adjusting entry of that month). A closed
month's rows are therefore the same whenever they are computed, and every entry counts exactly once.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Iterable, Mapping

from testbed.config import StackConfig, Tenant
from testbed.money import LedgerEntry, LedgerKind, kst_month, round_half_up
from testbed.statements import FINAL, PROVISIONAL, TOTAL, StatementRow, TenantStatement

COST_KINDS = (
    LedgerKind.OPENING,
    LedgerKind.CHARGE,
    LedgerKind.ADJUSTMENT,
)  # what a grant is charged; not holds, releases
FUNDING_ORDER = ("national", "local", "self")
HOURS = Decimal("0.001")
DEFAULT_VAT_RATE = "0.1"  # a stack file without testbed:budget (the money contract's default)
NO_POOL = "adjustment"  # the pool column of an adjustment that names no pool


def next_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:])
    return f"{year + number // 12}-{number % 12 + 1:02d}"


def month_start(month: str) -> dt.date:
    return dt.date(int(month[:4]), int(month[5:]), 1)


def effective_month(entry: LedgerEntry, closes: Mapping[str, int]) -> str:
    """The month an entry counts in: its own, or the first month still open when it was written."""
    month = kst_month(entry.at)
    while month in closes and entry.id > closes[month]:
        month = next_month(month)
    return month


def split(amount: int, shares: list[Fraction]) -> list[int]:
    """``amount`` split by ``shares`` (summing to 1) into integers that add up to it exactly (largest remainder)."""
    if amount < 0:
        return [-part for part in split(-amount, shares)]
    exact = [amount * share for share in shares]
    parts = [int(value) for value in exact]  # floor: every value is >= 0
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: amount - sum(parts)]:
        parts[i] += 1
    return parts


def hours(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(HOURS, rounding=ROUND_HALF_UP)


@dataclass
class _Use:
    """What one pool's entries of the month add up to."""

    supply: int = 0
    gpu_seconds: int = 0
    cpu_milli_seconds: int = 0
    memory_mib_seconds: int = 0
    jobs: set[str] = field(default_factory=set)

    def add(self, entry: LedgerEntry) -> None:
        self.supply += entry.amount_krw
        self.gpu_seconds += entry.gpu_seconds or 0
        self.cpu_milli_seconds += entry.cpu_milli_seconds or 0
        self.memory_mib_seconds += entry.memory_mib_seconds or 0
        if entry.job_id:
            self.jobs.add(entry.job_id)

    def hours(self, share: Fraction) -> tuple[Decimal, Decimal, Decimal]:
        return (
            hours(Fraction(self.gpu_seconds, 3600) * share),
            hours(Fraction(self.cpu_milli_seconds, 3_600_000) * share),
            hours(Fraction(self.memory_mib_seconds, 1024 * 3600) * share),
        )


def funding_shares(tenant: Tenant) -> list[tuple[str, Fraction]]:
    """(funding source, share) of the tenant's grant, in the settlement's order, zero shares left out."""
    shares = {str(getattr(k, "value", k)): Fraction(str(v)) for k, v in tenant.grant.funding_shares.items()}
    return [(source, shares[source]) for source in FUNDING_ORDER if shares.get(source, 0) > 0]


def tenant_statement(
    stack: StackConfig,
    tenant: Tenant,
    month: str,
    entries: Iterable[LedgerEntry],
    closes: Mapping[str, int],
    provisional: bool,
) -> TenantStatement:
    """The tenant's statement for ``month`` from all its ledger entries (any month: the grant remaining needs them)."""
    vat_text = str(stack.budget.vat_rate) if stack.budget is not None else DEFAULT_VAT_RATE
    vat_rate = Fraction(vat_text)
    pools: dict[str, _Use] = defaultdict(_Use)
    to_date = 0
    for entry in entries:
        if entry.tenant != tenant.id or LedgerKind(entry.kind) not in COST_KINDS:
            continue
        counted = effective_month(entry, closes)
        if counted <= month:
            to_date += entry.amount_krw
        if counted == month:
            pools[entry.pool or NO_POOL].add(entry)
    grant_krw = tenant.grant.krw  # None: a grant of GPU-hours only
    remaining = max(grant_krw - to_date, 0) if grant_krw is not None else None
    status = PROVISIONAL if provisional else FINAL
    cost_item = str(getattr(tenant.grant.cost_item, "value", tenant.grant.cost_item))
    sources = funding_shares(tenant)
    all_jobs = set().union(*(use.jobs for use in pools.values())) if pools else set()
    whole = _Use(
        supply=sum(u.supply for u in pools.values()),
        gpu_seconds=sum(u.gpu_seconds for u in pools.values()),
        cpu_milli_seconds=sum(u.cpu_milli_seconds for u in pools.values()),
        memory_mib_seconds=sum(u.memory_mib_seconds for u in pools.values()),
        jobs=all_jobs,
    )

    def row(
        source: str, pool: str, share: Fraction, use: _Use, supply: int, vat: int, jobs: int, left: int | None
    ) -> StatementRow:
        gpu, cpu, memory = use.hours(share)
        return StatementRow(
            month=month,
            status=status,
            tenant=tenant.id,
            tenant_name=tenant.name,
            funding_source=source,
            cost_item=cost_item,
            pool=pool,
            share=Decimal(share.numerator) / Decimal(share.denominator),
            gpu_hours=gpu,
            cpu_hours=cpu,
            memory_gib_hours=memory,
            jobs=jobs,
            supply_krw=supply,
            vat_krw=vat,
            total_krw=supply + vat,
            grant_remaining_krw=left,
        )

    rows: list[StatementRow] = []
    shares = [share for _, share in sources]
    by_pool = {pool: split(use.supply, shares) for pool, use in sorted(pools.items())}
    remaining_parts: list[int | None] = split(remaining, shares) if remaining is not None else [None] * len(shares)
    vat_total = 0
    for i, (source, share) in enumerate(sources):
        source_rows = []
        for pool, use in sorted(pools.items()):
            supply = by_pool[pool][i]
            vat = round_half_up(supply * vat_rate)
            source_rows.append(row(source, pool, share, use, supply, vat, len(use.jobs), None))
        supply, vat = sum(r.supply_krw for r in source_rows), sum(r.vat_krw for r in source_rows)
        vat_total += vat
        rows += source_rows
        rows.append(row(source, TOTAL, share, whole, supply, vat, len(all_jobs), remaining_parts[i]))
    rows.append(row(TOTAL, TOTAL, Fraction(1), whole, whole.supply, vat_total, len(all_jobs), remaining))
    return TenantStatement(
        month=month,
        provisional=provisional,
        tenant=tenant.id,
        tenant_name=tenant.name,
        region=stack.region.id,
        cost_item=cost_item,
        grant_krw=grant_krw,
        charged_krw=whole.supply,
        charged_to_date_krw=to_date,
        grant_remaining_krw=remaining,
        vat_rate=Decimal(vat_text),
        rows=rows,
    )
