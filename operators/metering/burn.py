"""Grant burn-down in won: the burn rate over the last 7 Asia/Seoul days and the forecast exhaustion date.

burn rate = won charged (charges and adjustments; not the opening entry) from 00:00 KST six days
before today (or the grant's start, if later) until now, divided by the days elapsed in that window
(at least one). Forecast: the day (KST) the remaining grant (grant - charged - held) runs out at that
rate; none while nothing burns. The company is told at 80% and 100% of its grant charged
(:func:`grant_notice`: its job messages and ``testbed usage``).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

from pydantic import BaseModel

from testbed.money import LedgerKind, TenantBalance, day_start_ts, kst_date

WINDOW_DAYS = 7
DAY = 86400.0
BURN_KINDS = (LedgerKind.CHARGE, LedgerKind.ADJUSTMENT)


class Burn(BaseModel):
    """A tenant's burn-down facts (the ``/v1/usage`` fields and the ``testbed_tenant_*_krw`` gauges)."""

    burn_rate_krw_per_day: float | None = None
    forecast_exhaustion_date: dt.date | None = None
    forecast_exhaustion_timestamp: float | None = None
    used_ratio: float | None = None
    grant_notice: str | None = None


def window_start(now: float, grant_start: dt.date | None) -> float:
    start = day_start_ts(kst_date(now) - dt.timedelta(days=WINDOW_DAYS - 1))
    return max(start, day_start_ts(grant_start)) if grant_start is not None else start


NOTICE_RATIO = 0.8  # companies are told about their grant from 80% charged


def may_notice(charged_krw: int, grant_krw: int | None) -> bool:
    """Whether a company charged this much may be told about its grant (its full balance is needed only then)."""
    return bool(grant_krw) and charged_krw / grant_krw >= NOTICE_RATIO  # type: ignore[operator]


def grant_notice(balance: TenantBalance | None) -> str | None:
    """What a company is told about its grant at 80% and 100% charged (None below)."""
    if balance is None or not balance.grant_krw or not may_notice(balance.charged_krw, balance.grant_krw):
        return None
    ratio = balance.charged_krw / balance.grant_krw
    if ratio >= 1.0:
        return (
            f"지원금 소진 (grant used up): {balance.charged_krw:,} of {balance.grant_krw:,} KRW charged "
            f"({ratio:.0%}); ask your operator before starting more work"
        )
    return (
        f"지원금 {ratio:.0%} 사용 (grant {ratio:.0%} used): {balance.charged_krw:,} of "
        f"{balance.grant_krw:,} KRW charged, {balance.remaining_krw or 0:,} KRW remaining"
    )


def burn_of(money: Any, tenant: Any, balance: TenantBalance | None, now: float | None = None) -> Burn:
    """The burn-down of one configured tenant from the money ledger (``money``: the plane's ``MoneyLedger``)."""
    now = time.time() if now is None else now
    if balance is None or balance.grant_krw is None:
        return Burn()
    since = window_start(now, tenant.grant.start)
    burned = sum(e.amount_krw for e in money.entries(tenant=tenant.id, since=since, kinds=BURN_KINDS))
    days = max((now - since) / DAY, 1.0)
    rate = max(burned, 0) / days
    used = balance.charged_krw / balance.grant_krw if balance.grant_krw else None
    forecast_ts = forecast_date = None
    remaining = balance.remaining_krw or 0
    if rate > 0:
        forecast_ts = now + remaining / rate * DAY
        if math.isfinite(forecast_ts) and forecast_ts < 253402300799:  # year 9999
            forecast_date = kst_date(forecast_ts)
        else:
            forecast_ts = None
    elif remaining == 0:
        forecast_ts, forecast_date = now, kst_date(now)
    return Burn(
        burn_rate_krw_per_day=round(rate, 2),
        forecast_exhaustion_date=forecast_date,
        forecast_exhaustion_timestamp=forecast_ts,
        used_ratio=used,
        grant_notice=grant_notice(balance),
    )
