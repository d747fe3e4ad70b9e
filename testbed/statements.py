"""Monthly statements: the typed model the control plane computes from the money ledger and every exporter renders.

A statement covers one Asia/Seoul month and, per tenant, one row per funding source (the grant's
funding shares) and pool: resource-hours, supply amount (공급가액, excl. VAT), VAT (부가세 =
round_half_up(supply x vat_rate) per row) and total (합계), in whole won. Each funding source has a
subtotal row (pool ``합계``) carrying the grant remaining at the month's end, and the tenant a grand
total row (funding source ``합계``). A month that is not closed is provisional (가집계) on every row.
The rows of a tenant's supply add up exactly to its ledger (charges and adjustments of the month):
a pool's amount is split between funding sources by largest remainder.
"""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import BaseModel, Field

MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
TOTAL = "합계"  # the pool of a funding source's subtotal row, the funding source of a tenant's total row
PROVISIONAL = "가집계"
FINAL = "확정"


def check_month(month: str) -> str:
    """``YYYY-MM`` or ValueError naming the value."""
    if not re.match(MONTH_PATTERN, month):
        raise ValueError(f"month {month[:20]!r}: expected YYYY-MM, e.g. 2026-03")
    return month


class StatementRow(BaseModel):
    """One line of a statement: a tenant's use of one pool paid by one funding source (or a subtotal/total)."""

    month: str
    status: str = Field(description=f"{FINAL} (closed month) or {PROVISIONAL} (provisional: month still open)")
    tenant: str
    tenant_name: str
    funding_source: str = Field(description=f"national | local | self, or {TOTAL} on the tenant's total row")
    cost_item: str = Field(description="development | demonstration | dissemination")
    pool: str = Field(description=f"a node pool, or {TOTAL} on a subtotal row")
    share: Decimal = Field(description="the funding source's share of the grant (1 on the total row)")
    gpu_hours: Decimal
    cpu_hours: Decimal
    memory_gib_hours: Decimal
    jobs: int = Field(description="jobs charged in the month (of the pool; of the tenant on subtotal/total rows)")
    supply_krw: int = Field(description="공급가액: supply amount, excl. VAT; what the grant is consumed by")
    vat_krw: int = Field(description="부가세")
    total_krw: int = Field(description="합계 = supply + VAT")
    grant_remaining_krw: int | None = Field(
        default=None,
        description="grant remaining at the month's end (subtotal and total rows): the funding source's part of it",
    )


class TenantStatement(BaseModel):
    """A tenant's statement for one month."""

    month: str
    provisional: bool
    tenant: str
    tenant_name: str
    region: str
    cost_item: str
    grant_krw: int | None = Field(description="the grant in won (None: a grant of GPU-hours only)")
    charged_krw: int = Field(description="supply amount charged in this month (the ledger's charges and adjustments)")
    charged_to_date_krw: int = Field(description="supply amount charged from the grant's start to the month's end")
    grant_remaining_krw: int | None
    vat_rate: Decimal
    rows: list[StatementRow]
    idle_gpu_hours: Decimal = Field(
        default=Decimal(0),
        description="GPU-hours its jobs held idle (DCGM utilisation "
        "under the idle threshold), counted in the month they were last observed idle",
    )

    @property
    def total(self) -> StatementRow:
        return self.rows[-1]


class Statement(BaseModel):
    """``GET /v1/statements/{month}``: every tenant the caller may see."""

    month: str
    provisional: bool
    closed_at: float | None = Field(default=None, description="epoch seconds the month was closed (None: open)")
    tenants: list[TenantStatement]


class MonthClosed(BaseModel):
    """``POST /v1/statements/{month}/close``: the month is final from now on."""

    month: str
    closed_at: float
    closed_by: str | None
    last_ledger_id: int = Field(description="the newest ledger entry the closed month includes")
    rows_sha256: str = Field(description="SHA-256 of the frozen rows (canonical JSON)")
    tenants: int
