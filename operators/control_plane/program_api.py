"""``GET /v1/budget``: the region's budget and fiscal period, for the operator and the program office.

With ``GET /v1/usage`` (every tenant's grant, charges, burn) it is what ``testbed program report`` reads from
each region (testbed/program.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI

from operators.control_plane.auth import Principal, principal_from_request
from testbed.errors import ErrorCode
from operators.control_plane.errors import ServiceError, error_responses
from operators.control_plane.plane import ControlPlane
from testbed.program import RegionBudget


def install(app: FastAPI, plane: ControlPlane) -> None:
    @app.get("/v1/budget", response_model=RegionBudget, tags=["program"], responses=error_responses(401, 403, 404, 503))
    def budget(caller: Annotated[Principal, Depends(principal_from_request)]) -> RegionBudget:
        """The region's budget per funding source and its fiscal period (operator and program office)."""
        if not caller.reads_every_tenant:
            raise ServiceError(ErrorCode.FORBIDDEN, "the region's budget is for the operator and program-office tokens")
        if getattr(plane.stack, "budget", None) is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"region {plane.stack.region.id!r} has no testbed:budget")
        return RegionBudget.from_stack(plane.stack)
