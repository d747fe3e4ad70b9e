"""Statement routes (the portal links them): ``GET /v1/statements/{month}``, ``POST /v1/statements/{month}/close``
(operator) and ``GET /v1/statements/{month}/download?format=csv|xlsx|pdf[&tenant=ID]``.

A tenant sees and downloads only its own statement; the operator every tenant's.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from operators.control_plane.api.deps import Caller, Plane
from testbed.errors import ErrorCode
from operators.control_plane.errors import ServiceError, error_responses
from operators.statements.export import ExportError, to_csv, to_pdf, to_xlsx
from testbed.limits import MAX_ID_CHARS
from testbed.statements import MONTH_PATTERN, MonthClosed, Statement

Month = Annotated[str, Path(pattern=MONTH_PATTERN, description="YYYY-MM (Asia/Seoul)")]
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def issued_at(statement: Statement) -> dt.datetime:
    """The date every exported file carries: the close (a closed month: the same bytes each time), else now."""
    return dt.datetime.fromtimestamp(
        statement.closed_at if statement.closed_at is not None else time.time(), tz=dt.timezone.utc
    )


def render(statement: Statement, fmt: str) -> tuple[bytes, str]:
    """(file bytes, file name) of a statement in ``fmt``."""
    when = issued_at(statement)
    month = statement.month
    suffix = "-provisional" if statement.provisional else ""
    if fmt == "csv":
        return to_csv(statement.tenants), f"statement-{month}{suffix}.csv"
    if fmt == "xlsx":
        return to_xlsx(statement.tenants, when, f"{month} statement"), f"statement-{month}{suffix}.xlsx"
    if len(statement.tenants) != 1:
        raise ServiceError(
            ErrorCode.INVALID_SPEC, "query.tenant: a PDF statement is one tenant's: name it with ?tenant=ID"
        )
    [one] = statement.tenants
    return to_pdf(one, when), f"statement-{month}-{one.tenant}{suffix}.pdf"


router = APIRouter()


@router.get("/v1/statements/{month}", response_model=Statement, responses=error_responses(401, 404, 422, 503))
def get_statement(
    month: Month, caller: Caller, plane: Plane, tenant: Annotated[str | None, Query(max_length=MAX_ID_CHARS)] = None
) -> Statement:
    """The month's statement rows per tenant, funding source and pool (provisional while the month is open)."""
    return plane.statements.statement(caller, month, tenant)


@router.post(
    "/v1/statements/{month}/close",
    response_model=MonthClosed,
    status_code=201,
    responses=error_responses(401, 403, 409, 422, 503),
)
def close_month(month: Month, caller: Caller, plane: Plane) -> MonthClosed:
    """Close the month (operator): its rows are frozen; later corrections count in the next open month."""
    return plane.statements.close(caller, month)


@router.get(
    "/v1/statements/{month}/download",
    responses={
        **error_responses(401, 404, 422, 503),
        200: {"content": {media: {} for media in MEDIA.values()}, "description": "the statement file"},
    },
)
async def download(
    month: Month,
    caller: Caller,
    plane: Plane,
    format: Literal["csv", "xlsx", "pdf"] = "csv",
    tenant: Annotated[str | None, Query(max_length=MAX_ID_CHARS)] = None,
) -> Response:
    """The statement as CSV (UTF-8 with BOM), XLSX or a one-tenant PDF; a closed month gives the same bytes each time."""
    if tenant is None and not caller.reads_every_tenant:
        tenant = caller.subject
    statement = await run_in_threadpool(plane.statements.statement, caller, month, tenant)
    try:
        data, name = await run_in_threadpool(render, statement, format)
    except ExportError as exc:
        raise ServiceError(ErrorCode.EXPORT_UNAVAILABLE, str(exc)) from None
    return Response(data, media_type=MEDIA[format], headers={"Content-Disposition": f'attachment; filename="{name}"'})
