"""``GET /v1/mlflow/credentials``: the caller's own MLflow login."""

from __future__ import annotations

from fastapi import APIRouter

from operators.control_plane.api.deps import Caller, Plane
from operators.control_plane.errors import error_responses
from testbed.api import MlflowLogin

router = APIRouter()


@router.get("/v1/mlflow/credentials", response_model=MlflowLogin, responses=error_responses(401, 403, 404, 503))
def mlflow_credentials(caller: Caller, plane: Plane) -> MlflowLogin:
    """The caller's own MLflow login: a tenant's user and workspace, or the operator's read-only user."""
    return plane.mlflow.login(caller)
