"""Routes of the audit trail and of named tokens: ``GET /v1/audit``, ``GET /v1/audit/verify``,
``GET /v1/tenants/{subject}/tokens``, ``DELETE /v1/tenants/{subject}/tokens/{name}`` (operator only).

Issuing a named token is ``POST /v1/tenants/{subject}/token?name=NAME`` (:mod:`.tenants`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query

from operators.control_plane import audit
from operators.control_plane.api.deps import Caller, PathId, Plane
from operators.control_plane.auth import Principal
from testbed.errors import ErrorCode
from operators.control_plane.errors import ServiceError, error_responses
from operators.control_plane.db.models import TokenRow
from operators.control_plane.tokens import TOKEN_NAME_PATTERN
from testbed.api import TokenInfo, TokenList
from testbed.audit import AuditPage, AuditVerification
from testbed.limits import DEFAULT_PAGE_SIZE, MAX_ID_CHARS, MAX_PAGE_SIZE


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def token_info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        subject=row.subject,
        name=row.name,
        token_id=row.token_hash[:12],
        created_at=_iso(row.created_at) or "",
        revoked_at=_iso(row.revoked_at),
        active=row.revoked_at is None,
    )


def require_operator(caller: Principal) -> None:
    """The audit trail is read by the operator and the program office (read-only)."""
    if not caller.reads_every_tenant:
        raise ServiceError(ErrorCode.FORBIDDEN, "only the operator and program-office tokens read the audit trail")


router = APIRouter()


@router.get("/v1/audit", response_model=AuditPage, responses=error_responses(401, 403, 422, 503))
def audit_list(
    caller: Caller,
    plane: Plane,
    tenant: Annotated[str | None, Query(max_length=MAX_ID_CHARS)] = None,
    kind: Annotated[
        str | None, Query(max_length=32, description="a kind (job.refused) or a prefix ending in '.' (token.)")
    ] = None,
    since: Annotated[float | None, Query(description="epoch seconds, inclusive")] = None,
    until: Annotated[float | None, Query(description="epoch seconds, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,16}$", description="next_cursor of the previous page")
    ] = None,
) -> AuditPage:
    """The audit trail, oldest first, filtered by tenant, kind and time (operator only)."""
    require_operator(caller)
    rows = audit.list_entries(
        plane.store,
        tenant=tenant,
        kind=kind,
        since=since,
        until=until,
        after_seq=int(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    return AuditPage(
        entries=[audit.entry_view(r) for r in page], next_cursor=str(page[-1].seq) if len(rows) > limit else None
    )


@router.get("/v1/audit/verify", response_model=AuditVerification, responses=error_responses(401, 403, 422, 503))
def audit_verify(
    caller: Caller,
    plane: Plane,
    expect_head: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
) -> AuditVerification:
    """Recompute the whole hash chain (operator only); ``ok: false`` lists the rows that break it."""
    require_operator(caller)
    return audit.verify(plane.store, expect_head=expect_head)


@router.get(
    "/v1/tenants/{subject}/tokens", response_model=TokenList, responses=error_responses(401, 403, 404, 422, 503)
)
def list_tokens(subject: PathId, caller: Caller, plane: Plane) -> TokenList:
    """A tenant's (or the operator's) named tokens, revoked ones included; never a token or its hash."""
    return TokenList(tokens=[token_info(row) for row in plane.issuer.list(caller, subject)])


@router.delete(
    "/v1/tenants/{subject}/tokens/{name}", response_model=TokenList, responses=error_responses(401, 403, 404, 422, 503)
)
def revoke_token(
    subject: PathId, name: Annotated[str, Path(pattern=TOKEN_NAME_PATTERN)], caller: Caller, plane: Plane
) -> TokenList:
    """Revoke a named token: it stops working at once on this replica, within seconds on the others."""
    return TokenList(tokens=[token_info(row) for row in plane.revoke_token(caller, subject, name)])
