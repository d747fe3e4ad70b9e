"""``GET /v1/budget``: the region's budget and fiscal period, for the operator and the program office.

With ``GET /v1/usage`` (every tenant's grant, charges, burn) it is what ``testbed program report`` reads from
each region (testbed/program.py).
"""

from __future__ import annotations

from fastapi import APIRouter

from operators.control_plane.api.deps import Caller, Plane
from testbed.errors import ErrorCode
from operators.control_plane.errors import ServiceError, error_responses
from testbed.program import RegionBudget

router = APIRouter()


@router.get("/v1/budget", response_model=RegionBudget, tags=["program"], responses=error_responses(401, 403, 404, 503))
def budget(caller: Caller, plane: Plane) -> RegionBudget:
    """The region's budget per funding source and its fiscal period (operator and program office)."""
    if not caller.reads_every_tenant:
        raise ServiceError(ErrorCode.FORBIDDEN, "the region's budget is for the operator and program-office tokens")
    if getattr(plane.stack, "budget", None) is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"region {plane.stack.region.id!r} has no testbed:budget")
    return RegionBudget.from_stack(plane.stack)
