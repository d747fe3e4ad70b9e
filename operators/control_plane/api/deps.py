"""What every route shares: the caller (one ``Caller``), the control plane (one ``Plane``), path ids."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from operators.control_plane.auth import Principal, principal_from_request
from operators.control_plane.plane import ControlPlane
from testbed.limits import MAX_ID_CHARS


async def get_plane(request: Request) -> ControlPlane:
    """FastAPI dependency: the control plane this app serves (``async``: FastAPI runs a plain ``def`` dependency on a
    worker thread, a hop per request for one attribute read)."""
    plane: ControlPlane = request.app.state.plane
    return plane


Caller = Annotated[Principal, Depends(principal_from_request)]
Plane = Annotated[ControlPlane, Depends(get_plane)]
PathId = Annotated[str, Path(max_length=MAX_ID_CHARS)]
