"""The control plane's REST API (FastAPI): the app, its lifespan and its routers (``api/``).

OpenAPI is served at /docs and /openapi.json.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI

from operators.control_plane.api import (
    audit,
    budget,
    health,
    jobs,
    mlflow,
    statements,
    storage,
    templates,
    tenant_exit,
    tenants,
    usage,
)
from operators.control_plane.backends.base import Backend
from operators.control_plane.db.store import Store
from operators.control_plane.errors import install_error_handlers
from operators.control_plane.guards import BodySizeLimit, HealthProbe
from operators.control_plane.plane import ControlPlane
from operators.control_plane.turns import TurnsByKey
from operators.metering.exporter import make_registry
from operators.portal import app as portal
from testbed.clock import SYSTEM_CLOCK, Clock
from testbed.limits import MAX_BODY_BYTES
from testbed.settings import ControlPlaneSettings

DISPATCH_THREADS = 4
# Admissions at once, per replica, by database. An admission is short (on SQLite a group commit with the one writer,
# on PostgreSQL four statements) and the requests beyond these wait in the pool's queue, inside their HTTP round trip.
# More threads only made more admissions contend, for the one writer (SQLite: each group commit grew, and every
# admission in it waited for it) and for the GIL on each round trip (PostgreSQL), and each admission took longer:
# bench_control_plane.py admission p99 22-27 ms with four, 17-19 ms with two; bench_replicas.py 78-93 ms with
# four, 34-50 ms with two, 42-66 ms with three (throughput 260-338, 246-299, 297-354 per s). On SQLite one is enough:
# admissions all write, through the one writer, so a second only waited for the first's writes and the GIL (five
# interleaved pairs of runs: p99 29 -> 19 ms, p50 7.7 -> 3.8 ms, 215 -> 217 jobs/s, the clients' round trips the same;
# over eleven pairs, 2.5% fewer jobs/s on average: within this machine's noise, docs/operators/scale.md).
# PostgreSQL keeps two: one thread waits idle on every round trip (two replicas: 263-274 jobs/s with one, 296-363
# with two).
ADMISSION_THREADS = {"sqlite": 1, "postgresql": 2}


def create_app(
    settings: ControlPlaneSettings,
    backend: Backend | None = None,
    store: Store | None = None,
    sync: bool = True,
    clock: Clock = SYSTEM_CLOCK,
) -> FastAPI:
    """Build the API around one region's control plane; ``sync`` starts the background sync (a test
    passes ``sync=False`` and drives ``plane.dispatcher.sync_once()``), ``clock`` drives its timers."""
    plane = ControlPlane(settings, backend=backend, store=store, clock=clock)

    # A few threads hand jobs to the backend: enough to overlap its network calls, few enough
    # that admissions on the event loop do not queue behind dozens of threads for the GIL.
    dispatchers = ThreadPoolExecutor(max_workers=DISPATCH_THREADS, thread_name_prefix="dispatch")
    # one thread per company at most
    admitters = TurnsByKey(ADMISSION_THREADS[plane.store.engine.dialect.name], "admit")
    probe = HealthProbe(plane.store, plane.backend)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if sync:
            plane.start()
        yield
        admitters.shutdown()  # first: an admission under way hands its job to a dispatch thread
        dispatchers.shutdown(wait=True)
        probe.close()
        plane.shutdown()

    app = FastAPI(
        title="Regional AI Testbed control plane",
        version="0.1.0",
        description="Tenants submit Ray jobs against their quota and GPU-hour grant; jobs, logs and usage are kept.",
        lifespan=lifespan,
        # Metering is Prometheus's (/metrics); no OpenTelemetry here. FastAPI's built-in telemetry (0.165) otherwise
        # looks up the global OpenTelemetry providers on every request to find them unconfigured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.plane = plane
    app.state.dispatchers = dispatchers
    app.state.admitters = admitters
    app.state.health_probe = probe
    app.state.metering_ledger = plane.ledger
    app.state.metering_registry = make_registry(plane.ledger, plane.stack, money=plane.money)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES, uploads=storage.upload_limits(settings))
    for router in (
        health.router,
        jobs.router,
        templates.router,
        tenants.router,
        mlflow.router,
        usage.router,
        audit.router,
        statements.router,
        budget.router,
        tenant_exit.router,
    ):
        app.include_router(router)
    app.include_router(portal.router)  # the web pages under /portal, through this API in process
    app.include_router(storage.router_for(settings))  # its OpenAPI names this plane's upload limits
    portal.install(app)  # the portal's sessions, error pages and static files
    return app
