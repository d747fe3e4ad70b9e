"""The control plane's REST API (FastAPI). OpenAPI is served at /docs and /openapi.json."""

from __future__ import annotations

import asyncio
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query

from operators.control_plane.auth import Principal, principal_from_request
from operators.control_plane.backends.base import Backend
from operators.control_plane.errors import error_responses, install_error_handlers
from operators.control_plane.guards import CURSOR_PATTERN, BodySizeLimit, HealthProbe, decode_cursor, encode_cursor
from operators.control_plane.plane import ControlPlane
from operators.control_plane.storage_api import install as install_storage
from operators.control_plane.storage_api import upload_limits
from operators.control_plane.store import JobRow, Store
from operators.metering import install as install_metering
from testbed.api import Health, IssuedToken, MlflowLogin, TemplateList, TenantInfo, TenantList
from testbed.quantities import format_memory
from testbed.jobs import Job, JobList, JobLogs, JobSpec, JobStatus
from testbed.money import Quote
from testbed.limits import DEFAULT_PAGE_SIZE, MAX_BODY_BYTES, MAX_ID_CHARS, MAX_PAGE_SIZE
from testbed.settings import ControlPlaneSettings
from testbed.templates import list_templates

Caller = Annotated[Principal, Depends(principal_from_request)]
PathId = Annotated[str, Path(max_length=MAX_ID_CHARS)]
DISPATCH_THREADS = 4
ADMISSION_THREADS = 4  # PostgreSQL: admissions of different tenants overlap, a few at a time


def iso(ts: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC with milliseconds (``2025-03-01T09:00:00.000Z``)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(row: JobRow, money: tuple[int, int] | None = None) -> Job:
    """A job record as the API answers it; ``money``: its (hold, charged) in won."""
    hold, charged = money or (0, 0)
    return Job(
        id=row.id,
        tenant=row.tenant,
        region=row.region,
        name=row.name,
        status=JobStatus(row.status),
        entrypoint=row.entrypoint,
        template=row.template,
        params=row.spec.get("params", {}),
        cpus=row.cpus,
        gpus=row.gpus,
        gpu_model=row.gpu_model,
        memory=format_memory(row.memory_bytes),
        experiment=row.experiment,
        message=row.message or "",
        submitted_at=iso(row.submitted_at) or "",
        started_at=iso(row.started_at),
        ended_at=iso(row.ended_at),
        backend_ref=row.backend_ref,
        max_runtime_seconds=row.spec.get("max_runtime_seconds"),
        hold_krw=hold,
        charged_krw=charged,
    )


def create_app(
    settings: ControlPlaneSettings, backend: Backend | None = None, store: Store | None = None, sync: bool = True
) -> FastAPI:
    """Build the API around one region's control plane; ``sync`` starts the background sync."""
    plane = ControlPlane(settings, backend=backend, store=store)

    # A few threads hand jobs to the backend: enough to overlap its network calls, few enough
    # that admissions on the event loop do not queue behind dozens of threads for the GIL.
    dispatchers = ThreadPoolExecutor(max_workers=DISPATCH_THREADS, thread_name_prefix="dispatch")
    admitters = ThreadPoolExecutor(max_workers=ADMISSION_THREADS, thread_name_prefix="admit")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if sync:
            plane.start()
        yield
        dispatchers.shutdown(wait=True)
        probe.close()
        admitters.shutdown(wait=True)
        plane.shutdown()

    app = FastAPI(
        title="Regional AI Testbed control plane",
        version="0.1.0",
        description="Tenants submit Ray jobs against their quota and GPU-hour grant; jobs, logs and usage are kept.",
        lifespan=lifespan,
    )
    app.state.plane = plane

    def view(row: JobRow) -> Job:
        return job_view(row, plane.money.job_money([row.id]).get(row.id))
    probe = HealthProbe(plane.store, plane.backend)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES, uploads=upload_limits(settings))

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        database, backend_healthy = probe.database(), probe.backend_healthy()
        return Health(
            status="ok" if database == "ok" and backend_healthy else "degraded",
            region=plane.stack.region.id,
            backend=plane.backend.name,
            backend_healthy=backend_healthy,
            database=database,
            reconciler=plane.dispatcher.reconciling,
        )

    @app.post("/v1/jobs", response_model=Job, status_code=201, responses=error_responses(401, 403, 404, 413, 422, 503))
    async def submit_job(spec: JobSpec, caller: Caller) -> Job:
        # Admission (checks and one insert) runs on a few threads of its own, never the event loop (a locked
        # database holds up this request, 503 after DB_TIMEOUT_SECONDS, not every other one), and not on dozens of
        # request threads contending for the GIL mid-admission. The backend call runs on the dispatch threads.
        loop = asyncio.get_running_loop()
        row = await loop.run_in_executor(admitters, plane.admit, caller, spec)
        return view(await loop.run_in_executor(dispatchers, plane.dispatch, row))

    @app.post("/v1/jobs/quote", response_model=Quote, responses=error_responses(401, 403, 404, 413, 422, 503))
    def quote_job(spec: JobSpec, caller: Caller) -> Quote:
        """The hold (maximum cost, in won) the same spec would take if submitted now, and whether it fits the
        grant's balance; nothing is submitted or recorded."""
        return plane.quote(caller, spec)

    @app.get("/v1/jobs", response_model=JobList, responses=error_responses(401, 422, 503))
    def list_jobs(
        caller: Caller,
        status: JobStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page")] = None,
    ) -> JobList:
        after = decode_cursor(cursor) if cursor is not None else None
        rows = plane.list_jobs(caller, status=status, limit=limit + 1, after=after)
        page = rows[:limit]
        money = plane.money.job_money([r.id for r in page])
        return JobList(jobs=[job_view(r, money.get(r.id)) for r in page], next_cursor=encode_cursor(page[-1]) if len(rows) > limit else None)

    @app.get("/v1/jobs/{job_id}", response_model=Job, responses=error_responses(401, 404, 422, 503))
    def get_job(job_id: PathId, caller: Caller) -> Job:
        return view(plane.visible_job(caller, job_id))

    @app.get("/v1/jobs/{job_id}/logs", response_model=JobLogs, responses=error_responses(401, 404, 422, 503))
    def job_logs(job_id: PathId, caller: Caller) -> JobLogs:
        row, text, final = plane.logs(caller, job_id)
        return JobLogs(id=row.id, status=JobStatus(row.status), logs=text, final=final)

    @app.post("/v1/jobs/{job_id}/stop", response_model=Job, responses=error_responses(401, 404, 422, 503))
    def stop_job(job_id: PathId, caller: Caller) -> Job:
        """Stop a job in any state (queued, starting, running); its ``message`` says what was done."""
        return view(plane.stop(caller, job_id))

    @app.get("/v1/templates", response_model=TemplateList, responses=error_responses(401, 503))
    def templates(_caller: Caller) -> TemplateList:
        return TemplateList(templates=list_templates())

    @app.get("/v1/tenants", response_model=TenantList, responses=error_responses(401, 503))
    def tenants(caller: Caller) -> TenantList:
        return TenantList(tenants=[
            TenantInfo(
                id=t.id, name=t.name, industry=t.industry, sample=t.sample, grant_gpu_hours=t.grant.gpu_hours, grant_krw=t.grant.krw,
                grant_start=t.grant.start.isoformat(), grant_end=t.grant.end.isoformat(),
            )
            for t in plane.stack.tenants if caller.can_see(t.id)
        ])

    @app.post("/v1/tenants/{subject}/token", response_model=IssuedToken, status_code=201,
              responses=error_responses(401, 403, 404, 422, 503))
    def rotate_token(subject: PathId, caller: Caller) -> IssuedToken:
        return IssuedToken(subject=subject, token=plane.rotate_token(caller, subject))

    @app.get("/v1/mlflow/credentials", response_model=MlflowLogin, responses=error_responses(401, 403, 404, 503))
    def mlflow_credentials(caller: Caller) -> MlflowLogin:
        """The caller's own MLflow login: a tenant's user and workspace, or the operator's read-only user."""
        return plane.mlflow.login(caller)

    install_metering(app, plane)  # /metrics and /v1/usage
    install_storage(app, plane)  # /v1/packages, /v1/data, /v1/jobs/{id}/outputs
    return app
