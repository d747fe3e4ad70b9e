"""Usage reports: each tenant's allocated use against its grant, from the ledger."""

from __future__ import annotations

import datetime as dt
import time

from typing import Any

from operators.control_plane.db.ledger import Ledger, TenantMeter
from operators.metering.burn import burn_of
from testbed.config import StackConfig
from testbed.usage import BurnPoint, TenantUsage, UsageReport


def build_report(
    ledger: Ledger,
    stack: StackConfig,
    tenants: list[str] | None = None,
    series: bool = False,
    now: float | None = None,
    money: Any = None,
) -> UsageReport:
    """The usage of ``tenants`` (None: every tenant, configured or with recorded jobs); ``money``: the control
    plane's ``MoneyLedger`` (the won fields come from it alone)."""
    now = time.time() if now is None else now
    meters = ledger.snapshot(now, tenants=tenants)
    configured = {t.id: t for t in stack.tenants}
    ids = sorted(tenants if tenants is not None else configured.keys() | meters.keys())
    balances = money.balances(now, tenants=ids) if money is not None else {}
    burn = ledger.gpu_burn(ids, now) if series else {}
    idle = ledger.store.idle_gpu_seconds(ids)
    rows = []
    for tenant_id in ids:
        meter = meters.get(tenant_id) or TenantMeter(tenant_id)
        tenant = configured.get(tenant_id)
        points = burn.get(tenant_id, [])
        rows.append(
            TenantUsage(
                tenant=tenant_id,
                name=tenant.name if tenant else None,
                industry=tenant.industry if tenant else None,
                region=stack.region.id,
                cpu_seconds=meter.cpu_seconds,
                memory_byte_seconds=meter.memory_byte_seconds,
                gpu_seconds_by_model=meter.gpu_seconds,
                jobs=meter.jobs,
                grant_gpu_seconds=tenant.grant.gpu_seconds if tenant else None,
                grant_start=tenant.grant.start if tenant else None,
                grant_end=tenant.grant.end if tenant else None,
                burn=[BurnPoint(timestamp=t, gpu_seconds=g) for t, g in [*points, (now, meter.gpu_seconds_total)]]
                if series
                else None,
                idle_gpu_seconds=idle.get(tenant_id, 0.0),
                **_money_fields(balances.get(tenant_id), tenant),
                **_burn_fields(money, tenant, balances.get(tenant_id), now),
            )
        )
    return UsageReport(
        region=stack.region.id, generated_at=dt.datetime.fromtimestamp(now, dt.timezone.utc), tenants=rows
    )


def _burn_fields(money: Any, tenant: Any, balance: Any, now: float) -> dict[str, Any]:
    """The burn-down fields of a configured tenant's usage row (:mod:`operators.metering.burn`)."""
    if money is None or tenant is None:
        return {}
    return burn_of(money, tenant, balance, now).model_dump(exclude={"forecast_exhaustion_timestamp"})


def _money_fields(balance: Any, tenant: Any) -> dict[str, Any]:
    """The ``*_krw`` fields of a tenant's usage row."""
    fields: dict[str, Any] = {}
    if tenant is not None:
        grant = tenant.grant
        fields.update(
            grant_krw=grant.krw,
            enforcement=grant.enforcement.value,
            cost_item=grant.cost_item.value,
            funding_shares={k.value: v for k, v in grant.funding_shares.items()},
        )
    if balance is not None:
        fields.update(
            charged_krw=balance.charged_krw,
            held_krw=balance.held_krw,
            remaining_krw=balance.remaining_krw,
            overspend_krw=balance.overspend_krw,
            charged_gpu_hours=balance.charged_gpu_hours,
        )
    return fields
