"""HTTP endpoints of metering: ``GET /metrics`` (Prometheus) and ``GET /v1/usage`` (reports)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest

from operators.control_plane.api.deps import Caller, Plane
from operators.control_plane.errors import ServiceError, error_responses, not_found
from operators.metering.exporter import TEXT_CONTENT_TYPE
from operators.metering.report import build_report
from testbed.limits import MAX_ID_CHARS
from testbed.usage import UsageReport
from testbed.errors import ErrorCode

router = APIRouter()


@router.get(
    "/metrics",
    tags=["usage"],
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition",
            "content": {TEXT_CONTENT_TYPE: {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403, 503),
    },
)
def metrics(caller: Caller, request: Request) -> Response:
    """Prometheus text format, for the operator and monitoring tokens only (every tenant's usage and grant is in
    it); a tenant reads its own usage from ``/v1/usage``."""
    if not caller.can_read_metrics:
        raise ServiceError(
            ErrorCode.FORBIDDEN, "/metrics is for the operator or monitoring token; tenants read /v1/usage"
        )
    registry: CollectorRegistry = request.app.state.metering_registry
    return Response(generate_latest(registry), media_type=TEXT_CONTENT_TYPE)


@router.get("/v1/usage", response_model=UsageReport, tags=["usage"], responses=error_responses(401, 404, 422, 503))
def usage(
    caller: Caller,
    plane: Plane,
    tenant: Annotated[str | None, Query(max_length=MAX_ID_CHARS)] = None,
    series: Annotated[bool, Query(description="add each tenant's cumulative GPU-seconds over time")] = False,
) -> Any:
    """Allocated use per tenant: a tenant token sees its own, the operator token every tenant."""
    ledger, stack = plane.ledger, plane.stack
    if tenant is not None and (
        not caller.can_read_accounts(tenant)
        or (tenant not in {t.id for t in stack.tenants} and not ledger.snapshot(tenants=[tenant]))
    ):
        raise not_found(f"usage for tenant {tenant!r} in region {stack.region.id!r}")
    wanted = [tenant] if tenant is not None else (None if caller.reads_every_tenant else [caller.subject])
    return build_report(ledger, stack, wanted, series, money=plane.money)
