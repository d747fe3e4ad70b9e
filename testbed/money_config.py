"""The stack file's money: price rows per pool, the region's budget per funding source, each company's grant,
and the check of a whole stack that its grants fit the budget and have prices."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator

from testbed.money import (
    CostItem,
    Enforcement,
    FundingSource,
    Rates,
    day_end_ts,
    day_start_ts,
    round_half_up,
)
from testbed.stack_model import CONFIG_NAMESPACE, LOCAL_POOL, SLUG, StackModel

if TYPE_CHECKING:
    from testbed.config import StackConfig


class Price(StackModel):
    """One row of a pool's price table (KRW per hour, excluding VAT); a new price is a new row, never an edit."""

    pool: str = Field(pattern=SLUG, description=f"a node pool's name, or {LOCAL_POOL!r} for the local testbed")
    effective_from: dt.date = Field(description="Asia/Seoul day from which this row is in force")
    gpu_hour_krw: int = Field(ge=0)
    cpu_hour_krw: int = Field(ge=0)
    gib_hour_krw: int = Field(ge=0, description="per GiB of memory per hour")
    source: str = Field(min_length=1, description="where the number comes from")
    sample: bool = False

    @property
    def id(self) -> str:
        """``<pool>@<effective_from>``: how ledger entries name the price they used."""
        return f"{self.pool}@{self.effective_from.isoformat()}"

    @property
    def effective_ts(self) -> float:
        return day_start_ts(self.effective_from)

    @property
    def rates(self) -> Rates:
        return Rates(gpu_hour_krw=self.gpu_hour_krw, cpu_hour_krw=self.cpu_hour_krw, gib_hour_krw=self.gib_hour_krw)


class Period(StackModel):
    """Inclusive Asia/Seoul days."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _order(self) -> "Period":
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class Budget(StackModel):
    """The region's budget per funding source over its fiscal period, and the VAT rate of its statements."""

    fiscal_period: Period
    vat_rate: float = Field(default=0.10, ge=0, le=1)
    funding: dict[FundingSource, int] = Field(description="KRW per funding source")
    sample: bool = False

    @field_validator("funding")
    @classmethod
    def _non_negative(cls, funding: dict[FundingSource, int]) -> dict[FundingSource, int]:
        for source, amount in funding.items():
            if amount < 0:
                raise ValueError(f"{source.value}: {amount} is negative")
        return funding

    @property
    def start_timestamp(self) -> float:
        return day_start_ts(self.fiscal_period.start)

    @property
    def end_timestamp(self) -> float:
        return day_end_ts(self.fiscal_period.end)


def _default_shares() -> dict[FundingSource, float]:
    return {FundingSource.NATIONAL: 1.0}


class Grant(StackModel):
    """What a company may consume over a period: won (supply amount, excl. VAT) and/or GPU-hours."""

    krw: int | None = Field(default=None, ge=0, description="supply amount in KRW, excluding VAT")
    gpu_hours: float | None = Field(default=None, gt=0, description="optional second cap; whichever is reached first")
    start: dt.date
    end: dt.date
    funding_shares: dict[FundingSource, float] = Field(default_factory=_default_shares)
    cost_item: CostItem = CostItem.DEVELOPMENT
    enforcement: Enforcement = Enforcement.ADMIT_IF_FITS

    @model_validator(mode="after")
    def _period(self) -> "Grant":
        if self.end <= self.start:
            raise ValueError(f"grant end {self.end} is not after its start {self.start}")
        if self.krw is None and self.gpu_hours is None:
            raise ValueError("a grant needs krw (won) or gpu_hours, or both")
        total = sum(self.funding_shares.values())
        if any(share < 0 for share in self.funding_shares.values()) or abs(total - 1.0) > 1e-9:
            shares = ", ".join(f"{k.value}={v:g}" for k, v in self.funding_shares.items())
            raise ValueError(f"funding_shares ({shares}) must be non-negative and sum to 1, not {total:g}")
        return self

    @property
    def gpu_seconds(self) -> float | None:
        return None if self.gpu_hours is None else self.gpu_hours * 3600.0

    @property
    def start_timestamp(self) -> float:
        """00:00 Asia/Seoul of the grant's first day."""
        return day_start_ts(self.start)

    @property
    def end_timestamp(self) -> float:
        """End of the grant's last day in Asia/Seoul (the end date is inclusive)."""
        return day_end_ts(self.end)

    def share_krw(self, source: FundingSource) -> Fraction:
        """The exact won of this grant that ``source`` funds."""
        return Fraction(self.krw or 0) * Fraction(str(self.funding_shares.get(source, 0.0)))


def money_problems(stack: StackConfig) -> list[tuple[str, str]]:
    """What is wrong with a valid stack's money as a whole: grants beyond the budget, won grants without prices."""
    problems: list[tuple[str, str]] = []
    key = f"config.{CONFIG_NAMESPACE}"
    granted = [t for t in stack.tenants if t.grant.krw is not None]
    if stack.budget is not None:
        for source in FundingSource:
            total = sum((t.grant.share_krw(source) for t in granted), Fraction(0))
            budget = stack.budget.funding.get(source, 0)
            if total > budget:
                parts = " + ".join(
                    f"{t.id} {round_half_up(t.grant.share_krw(source)):,}" for t in granted if t.grant.share_krw(source)
                )
                problems.append(
                    (
                        f"{key}:budget.funding.{source.value}",
                        f"the grants' {source.value} shares total {round_half_up(total):,} KRW ({parts}), more "
                        f"than the budget's {budget:,} KRW by {round_half_up(total - budget):,} KRW",
                    )
                )
        period = stack.budget.fiscal_period
        for index, tenant in enumerate(stack.tenants):
            if tenant.grant.start < period.start or tenant.grant.end > period.end:
                problems.append(
                    (
                        f"{key}:tenants[{index}].grant",
                        f"runs {tenant.grant.start} to {tenant.grant.end}, outside the fiscal period "
                        f"{period.start} to {period.end}",
                    )
                )
    elif granted:
        problems.append((f"{key}:budget", f"is required when a grant is in won ({granted[0].id} has krw)"))
    for tenant in stack.tenants:
        if tenant.grant.krw is None:
            continue
        for pool in sorted({stack.pool_for(tenant).name, LOCAL_POOL}):
            if not any(p.effective_from <= tenant.grant.end for p in stack.price_rows(pool)):
                problems.append(
                    (
                        f"{key}:prices",
                        f"no row for pool {pool!r} in force by {tenant.grant.end} "
                        f"(tenant {tenant.id!r}'s grant in won ends then)",
                    )
                )
    return list(dict.fromkeys(problems))
