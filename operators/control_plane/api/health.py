"""``GET /healthz``: the database, the backend and MLflow, as the app's probe last saw them."""

from __future__ import annotations

from fastapi import APIRouter, Request

from operators.control_plane.api.deps import Plane
from operators.control_plane.guards import HealthProbe
from testbed.api import Health

router = APIRouter()


@router.get("/healthz", response_model=Health)
def healthz(plane: Plane, request: Request) -> Health:
    probe: HealthProbe = request.app.state.health_probe
    database, backend_healthy = probe.database(), probe.backend_healthy()
    return Health(
        status="ok" if database == "ok" and backend_healthy else "degraded",
        region=plane.stack.region.id,
        backend=plane.backend.name,
        backend_healthy=backend_healthy,
        database=database,
        reconciler=plane.dispatcher.reconciling,
        mlflow=probe.bounded(plane.mlflow.state, "unavailable"),
    )
