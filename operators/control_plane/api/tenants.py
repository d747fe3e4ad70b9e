"""``GET /v1/tenants`` and ``POST /v1/tenants/{subject}/token``: tenants and their tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from operators.control_plane.api.deps import Caller, PathId, Plane
from operators.control_plane.db.models import DEFAULT_TOKEN_NAME
from operators.control_plane.tokens import TOKEN_NAME_PATTERN
from operators.control_plane.errors import error_responses
from testbed.api import IssuedToken, TenantInfo, TenantList

router = APIRouter()


@router.get("/v1/tenants", response_model=TenantList, responses=error_responses(401, 503))
def tenants(caller: Caller, plane: Plane) -> TenantList:
    return TenantList(
        tenants=[
            TenantInfo(
                id=t.id,
                name=t.name,
                industry=t.industry,
                sample=t.sample,
                grant_gpu_hours=t.grant.gpu_hours,
                grant_krw=t.grant.krw,
                grant_start=t.grant.start.isoformat(),
                grant_end=t.grant.end.isoformat(),
            )
            for t in plane.stack.tenants
            if caller.can_read_accounts(t.id)
        ]
    )


@router.post(
    "/v1/tenants/{subject}/token",
    response_model=IssuedToken,
    status_code=201,
    responses=error_responses(401, 403, 404, 422, 503),
)
def rotate_token(
    subject: PathId,
    caller: Caller,
    plane: Plane,
    name: Annotated[str, Query(pattern=TOKEN_NAME_PATTERN, description="whose token (a person)")] = DEFAULT_TOKEN_NAME,
) -> IssuedToken:
    """Issue the subject's token ``name`` (operator only); its older token of that name stops working."""
    return IssuedToken(subject=subject, name=name, token=plane.rotate_token(caller, subject, name))
