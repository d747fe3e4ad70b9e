"""HTTP endpoints of metering: ``GET /metrics`` (Prometheus) and ``GET /v1/usage`` (reports)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest

from operators.control_plane.auth import Principal, principal_from_request
from operators.control_plane.errors import ServiceError, error_responses, not_found
from operators.metering.exporter import TEXT_CONTENT_TYPE
from operators.metering.ledger import Ledger, TenantMeter
from testbed.config import StackConfig
from testbed.limits import MAX_ID_CHARS
from testbed.usage import BurnPoint, TenantUsage, UsageReport


def build_report(
    ledger: Ledger, stack: StackConfig, tenants: list[str] | None = None, series: bool = False, now: float | None = None,
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
            **_money_fields(balances.get(tenant_id), tenant),
        ))
    return UsageReport(
        region=stack.region.id, generated_at=dt.datetime.fromtimestamp(now, dt.timezone.utc), tenants=rows
    )


def _money_fields(balance: Any, tenant: Any) -> dict[str, Any]:
    """The ``*_krw`` fields of a tenant's usage row."""
    fields: dict[str, Any] = {}
    if tenant is not None:
        grant = tenant.grant
        fields.update(grant_krw=grant.krw, enforcement=grant.enforcement.value, cost_item=grant.cost_item.value,
                      funding_shares={k.value: v for k, v in grant.funding_shares.items()})
    if balance is not None:
        fields.update(charged_krw=balance.charged_krw, held_krw=balance.held_krw, remaining_krw=balance.remaining_krw,
                      overspend_krw=balance.overspend_krw, charged_gpu_hours=balance.charged_gpu_hours)
    return fields


def make_router(ledger: Ledger, stack: StackConfig, registry: CollectorRegistry, money: Any = None) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", tags=["usage"], response_class=Response, responses={
        200: {"description": "Prometheus text exposition", "content": {TEXT_CONTENT_TYPE: {"schema": {"type": "string"}}}},
        **error_responses(401, 403, 503)})
    def metrics(caller: Annotated[Principal, Depends(principal_from_request)]) -> Response:
        """Prometheus text format, for the operator and monitoring tokens only (every tenant's usage and grant is in
        it); a tenant reads its own usage from ``/v1/usage``."""
        if not caller.can_read_metrics:
            raise ServiceError(403, "forbidden", "/metrics is for the operator or monitoring token; tenants read /v1/usage")
        return Response(generate_latest(registry), media_type=TEXT_CONTENT_TYPE)

    @router.get("/v1/usage", response_model=UsageReport, tags=["usage"], responses=error_responses(401, 404, 422, 503))
    def usage(
        caller: Annotated[Principal, Depends(principal_from_request)],
        tenant: Annotated[str | None, Query(max_length=MAX_ID_CHARS)] = None,
        series: Annotated[bool, Query(description="add each tenant's cumulative GPU-seconds over time")] = False,
    ) -> Any:
        """Allocated use per tenant: a tenant token sees its own, the operator token every tenant."""
        if tenant is not None and (
            not caller.can_see(tenant) or (tenant not in {t.id for t in stack.tenants} and not ledger.snapshot(tenants=[tenant]))
        ):
            raise not_found(f"usage for tenant {tenant!r} in region {stack.region.id!r}")
        wanted = [tenant] if tenant is not None else (None if caller.is_operator else [caller.subject])
        return build_report(ledger, stack, wanted, series, money=money)

    return router
