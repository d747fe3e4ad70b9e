"""Usage reports: each tenant's allocated use against its grant, from the ledger."""

from __future__ import annotations

import datetime as dt
import time

from operators.control_plane.db.ledger import Ledger, TenantMeter
from testbed.config import StackConfig
from testbed.usage import BurnPoint, TenantUsage, UsageReport


def build_report(
    ledger: Ledger, stack: StackConfig, tenants: list[str] | None = None, series: bool = False, now: float | None = None
) -> UsageReport:
    """The usage of ``tenants`` (None: every tenant, configured or with recorded jobs)."""
    now = time.time() if now is None else now
    meters = ledger.snapshot(now, tenants=tenants)
    configured = {t.id: t for t in stack.tenants}
    ids = sorted(tenants if tenants is not None else configured.keys() | meters.keys())
    burn = ledger.gpu_burn(ids, now) if series else {}
    rows = []
    for tenant_id in ids:
        meter = meters.get(tenant_id) or TenantMeter(tenant_id)
        tenant = configured.get(tenant_id)
        points = burn.get(tenant_id, [])
        rows.append(TenantUsage(
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
            if series else None,
        ))
    return UsageReport(
        region=stack.region.id, generated_at=dt.datetime.fromtimestamp(now, dt.timezone.utc), tenants=rows
    )
