"""A tenant's end in the program (operator): ``GET /v1/tenants/{tenant}/archive`` (everything kept of it, as one zip)
and ``POST /v1/tenants/{tenant}/purge`` (after an export; ledger and audit rows stay)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import StreamingResponse

from operators.control_plane.api.deps import Caller, PathId, Plane
from operators.control_plane.api.storage import read_chunks
from operators.control_plane.auth import OPERATOR
from operators.control_plane.errors import ServiceError, error_responses
from operators.control_plane.tenant_exit import (
    ARCHIVE_MEDIA_TYPE,
    build_archive,
    known_tenant,
    purge,
    record_export,
    operator_only,
)
from testbed.errors import ErrorCode
from testbed.tenant_exit import PurgeRequest, PurgeResult

router = APIRouter(tags=["tenants"])


@router.get(
    "/v1/tenants/{tenant}/archive",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "a zip: storage/, jobs.json, usage.json, ledger.json",
            "content": {ARCHIVE_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(401, 403, 404, 422, 503),
    },
)
def archive(tenant: PathId, caller: Caller, plane: Plane) -> StreamingResponse:
    """Everything the platform keeps of a tenant, as one zip (operator); the export is recorded."""
    operator_only(caller)
    known_tenant(plane, tenant)
    spool, sha256, size = build_archive(plane, tenant)
    record_export(plane, tenant, sha256, size, caller.actor)
    return StreamingResponse(
        read_chunks(spool, size),
        media_type=ARCHIVE_MEDIA_TYPE,
        headers={
            "Content-Length": str(size),
            "X-Archive-SHA256": sha256,
            "Content-Disposition": f'attachment; filename="{tenant}.zip"',
        },
    )


@router.post(
    "/v1/tenants/{tenant}/purge", response_model=PurgeResult, responses=error_responses(401, 403, 404, 409, 422, 503)
)
def purge_tenant(tenant: PathId, body: Annotated[PurgeRequest, Body()], caller: Caller, plane: Plane) -> PurgeResult:
    """Remove a tenant's storage, job logs and tokens after an export (operator; ``confirm`` repeats the id)."""
    operator_only(caller)
    known_tenant(plane, tenant)
    if body.confirm != tenant or tenant == OPERATOR:
        raise ServiceError(ErrorCode.INVALID_SPEC, f"confirm must repeat the tenant id {tenant!r}")
    return purge(plane, tenant, caller.actor)
