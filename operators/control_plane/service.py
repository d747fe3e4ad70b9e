"""The job lifecycle: admission, persistence, dispatch to the backend, status sync, history.

submit -> validate spec -> admission (quota, grant) -> job record persisted -> backend submit
-> status sync -> terminal state; logs and usage are kept after the backend forgets the job.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

from operators.control_plane.auth import OPERATOR, Principal, TokenCache, issue_token
from operators.control_plane.backends.base import (
    NO_RESOURCES,
    Backend,
    BackendError,
    BackendJobInfo,
    Capacity,
    JobNotFound,
    LaunchRequest,
    Resources,
    RuntimeEnv,
)
from operators.control_plane.backends.factory import make_backend
from operators.control_plane.errors import ServiceError, not_found
from testbed.settings import ControlPlaneSettings
from operators.control_plane.store import JobRow, Store
from operators.metering.ledger import Ledger
from testbed import jobs as J
from testbed.secrets import write_secret
from testbed.config import StackConfig, Tenant, format_memory, load_stack_file
from testbed.jobs import Job, JobSpec, JobStatus
from testbed.templates import TemplateError, get_template

log = logging.getLogger("testbed.control_plane")

# If we last looked at a job longer ago than this, we cannot tell when it started running and
# bill from the moment the backend accepted it.
_START_OBSERVATION_SLACK_SECONDS = 2.0
SYNC_BATCH = 16  # job updates per sync transaction
START_WATCH_INTERVAL_SECONDS = 0.05  # how often jobs about to start are looked at


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(row: JobRow) -> Job:
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
    )


class ControlPlane:
    """One region's control plane: the stack's tenants, a job store and a backend."""

    def __init__(self, settings: ControlPlaneSettings, backend: Backend | None = None, store: Store | None = None):
        self.settings = settings
        self.stack: StackConfig = load_stack_file(settings.stack_file)
        self.tenants: dict[str, Tenant] = {t.id: t for t in self.stack.tenants}
        self.store = store or Store(settings.database_url)
        self.backend = backend or make_backend(settings, self.stack)
        self.tokens = TokenCache(self.store)
        # The same ledger meters usage for /metrics and /v1/usage and for the grant check here.
        self.ledger = Ledger(self.store)
        self.ledger.install()
        self._tenant_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._stopping = threading.Event()
        self._sync_thread: threading.Thread | None = None
        if settings.credentials_dir is not None:
            self.bootstrap_tokens(settings.credentials_dir)

    def bootstrap_tokens(self, credentials_dir: Path) -> None:
        """Local mode: give every tenant of the region (and the operator) a token if it has none.

        Only the hash is stored; the clear token is written once to ``credentials_dir`` (0600),
        the local operator's equivalent of a kubeconfig.
        """
        credentials_dir.mkdir(parents=True, exist_ok=True)
        known = self.store.token_subjects()
        for subject in [*self.tenants, OPERATOR]:
            path = credentials_dir / f"{subject}.token"
            if subject in known and path.exists():
                continue
            token = issue_token(self.store, subject, "operator" if subject == OPERATOR else "tenant")
            write_secret(path, token)

    def rotate_token(self, principal: Principal, subject: str) -> str:
        """Operator only: a new token for a tenant (or the operator); older ones stop working."""
        if not principal.is_operator:
            raise ServiceError(403, "forbidden", "only the operator token can issue tokens")
        if subject != OPERATOR and subject not in self.tenants:
            raise ServiceError(404, "not_found", f"no tenant {subject!r} in region {self.stack.region.id!r}")
        token = issue_token(self.store, subject, "operator" if subject == OPERATOR else "tenant", replace=True)
        self.tokens.clear()
        if self.settings.credentials_dir is not None:
            write_secret(self.settings.credentials_dir / f"{subject}.token", token)
        return token

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background sync (status, logs, queued jobs)."""
        if self._sync_thread is None:
            self._sync_thread = threading.Thread(target=self._sync_loop, name="job-sync", daemon=True)
            self._sync_thread.start()

    def shutdown(self) -> None:
        self._stopping.set()
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=10)
            self._sync_thread = None
        self.backend.close()
        self.store.close()

    def _sync_loop(self) -> None:
        """Refresh every active job each interval; jobs about to start are watched more closely."""
        last_full = 0.0
        watching_starts = False
        while not self._stopping.wait(START_WATCH_INTERVAL_SECONDS if watching_starts else self.settings.sync_interval_seconds):
            full = time.monotonic() - last_full >= self.settings.sync_interval_seconds
            try:
                watching_starts = self.sync_once(starting_only=not full)
            except Exception:  # keep syncing; a bad round must not stop the loop
                log.exception("job sync round failed")
            if full:
                last_full = time.monotonic()

    # -- admission ------------------------------------------------------------------------
    def submit(self, principal: Principal, spec: JobSpec) -> JobRow:
        """Admit a job, then hand it to the backend if the tenant has room."""
        return self.dispatch(self.admit(principal, spec))

    def admit(self, principal: Principal, spec: JobSpec) -> JobRow:
        """Refuse what can never run; persist the rest as a queued job record (nothing else)."""
        if principal.is_operator:
            raise ServiceError(403, "forbidden", "the operator token cannot submit jobs; use a tenant token")
        tenant = self.tenants.get(principal.subject)
        if tenant is None:
            raise ServiceError(403, "forbidden", f"tenant {principal.subject!r} is not in region {self.stack.region.id!r}")
        entrypoint, params, kind = self._entrypoint(spec)
        self._check_quota(tenant, spec)
        gpu_model = self.stack.pool_for(tenant).gpu_model if spec.gpus else None
        if spec.gpus:
            self._check_grant(tenant)

        job_id = "job-" + uuid.uuid4().hex[:16]
        experiment = J.experiment_name(tenant.id, spec.experiment_suffix)
        row = JobRow(
            id=job_id,
            tenant=tenant.id,
            region=self.stack.region.id,
            name=spec.experiment_suffix,
            experiment=experiment,
            status=JobStatus.PENDING.value,
            entrypoint=entrypoint,
            template=spec.template,
            spec={**spec.model_dump(mode="json"), "params": params, "kind": kind},
            cpus=spec.cpus,
            gpus=spec.gpus,
            gpu_model=gpu_model,
            memory_bytes=spec.memory,
            submitted_at=time.time(),
            dispatched=False,
            message="queued",
        )
        return self.store.add_job(row)

    def dispatch(self, row: JobRow) -> JobRow:
        """Hand an admitted job to the backend now if it fits; else it stays queued for the sync."""
        return self._dispatch(row) or row

    def _entrypoint(self, spec: JobSpec) -> tuple[str, dict, str]:
        if spec.template is None:
            return spec.entrypoint or "", {}, "command"
        try:
            template = get_template(spec.template)
            params = template.resolve(spec.params)
        except TemplateError as exc:
            raise ServiceError(422, "invalid_spec", str(exc)) from None
        return template.command(params), params, template.kind

    def _check_quota(self, tenant: Tenant, spec: JobSpec) -> None:
        quota = tenant.quota
        problems = []
        if spec.cpus > quota.cpus:
            problems.append(f"{spec.cpus:g} CPUs (quota {quota.cpus})")
        if spec.gpus > quota.gpus:
            problems.append(f"{spec.gpus} GPUs (quota {quota.gpus})")
        if spec.memory > quota.memory:
            problems.append(f"{format_memory(spec.memory)} memory (quota {format_memory(quota.memory)})")
        if problems:
            raise ServiceError(
                403, "quota_exceeded", f"job asks for {', '.join(problems)}: it can never fit tenant {tenant.id!r}'s quota"
            )
        capacity: Capacity = self.backend.capacity()
        if capacity.cpus is not None and spec.cpus > capacity.cpus:
            raise ServiceError(403, "capacity_exceeded", f"job asks for {spec.cpus:g} CPUs but the cluster has {capacity.cpus:g}")
        if capacity.gpus is not None and spec.gpus > capacity.gpus:
            raise ServiceError(403, "capacity_exceeded", f"job asks for {spec.gpus} GPUs but the cluster has {capacity.gpus:g}")

    def _check_grant(self, tenant: Tenant) -> None:
        now = time.time()
        grant = tenant.grant
        if not grant.start_timestamp <= now < grant.end_timestamp:
            raise ServiceError(403, "grant_inactive", f"tenant {tenant.id!r}'s grant runs {grant.start} to {grant.end}: GPU jobs are refused outside it")
        meter = self.ledger.snapshot(now=now, tenants=[tenant.id]).get(tenant.id)
        used = meter.gpu_seconds_total if meter is not None else 0.0
        if used >= grant.gpu_seconds:
            raise ServiceError(403, "grant_exhausted", f"tenant {tenant.id!r} has used {used / 3600:.1f} of {grant.gpu_hours:g} granted GPU-hours")

    # -- dispatch -------------------------------------------------------------------------
    def _fits_now(self, row: JobRow) -> str | None:
        """None if the tenant's running jobs leave room for this one, else why not."""
        quota = self.tenants[row.tenant].quota
        jobs, cpus, gpus, memory = self.store.held_by(row.tenant, exclude=row.id)
        if jobs >= quota.max_running_jobs:
            return f"queued: tenant runs {jobs} of {quota.max_running_jobs} allowed jobs"
        if cpus + row.cpus > quota.cpus:
            return f"queued: tenant's running jobs hold {cpus:g} of {quota.cpus} CPUs"
        if gpus + row.gpus > quota.gpus:
            return f"queued: tenant's running jobs hold {gpus} of {quota.gpus} GPUs"
        if memory + row.memory_bytes > quota.memory:
            return "queued: tenant's running jobs hold its memory quota"
        return None

    def _launch_request(self, row: JobRow) -> LaunchRequest:
        spec = JobSpec.model_validate({k: v for k, v in row.spec.items() if k != "kind"})
        budget = Resources(cpus=row.cpus, gpus=row.gpus, memory=row.memory_bytes)
        request = LaunchRequest(
            job_id=row.id, tenant=row.tenant, region=row.region, entrypoint=row.entrypoint, budget=budget,
            # A template drives Ray Train workers that reserve the job's resources themselves.
            driver=budget if row.template is None else NO_RESOURCES,
        )
        env = {
            **spec.env,
            J.ENV_MLFLOW_TRACKING_URI: self.settings.mlflow_tracking_uri,
            J.ENV_MLFLOW_EXPERIMENT_NAME: row.experiment,
            J.ENV_TENANT: row.tenant,
            J.ENV_JOB_ID: row.id,
            J.ENV_REGION: row.region,
            J.ENV_STORAGE_PATH: f"{self.settings.storage_path.rstrip('/')}/{row.tenant}/{row.id}",
            **budget.env(),
            J.ENV_RUN_TAGS: json.dumps(request.metadata),
        }
        return request.model_copy(update={"runtime_env": RuntimeEnv(env_vars=env, working_dir=spec.working_dir)})

    def _dispatch(self, row: JobRow) -> JobRow | None:
        """Hand a queued job to the backend if the tenant has room; return the updated row."""
        with self._tenant_locks[row.tenant]:
            current = self.store.get_job(row.id)
            if current is None or current.dispatched or current.terminal:
                return current
            reason = self._fits_now(current)
            if reason is not None:
                return self.store.update_job(row.id, message=reason)
            try:
                ref = self.backend.submit(self._launch_request(current))
            except BackendError as exc:
                return self.store.update_job(row.id, message=f"queued: waiting for the backend: {exc}")
            return self.store.update_job(row.id, dispatched=True, backend_ref=ref, message="", last_seen_at=time.time())

    # -- sync -----------------------------------------------------------------------------
    def sync_once(self, starting_only: bool = False) -> bool:
        """One round: refresh dispatched jobs, then dispatch queued ones.

        With ``starting_only``, only dispatched jobs not yet running are refreshed. Returns whether
        any dispatched job is still waiting to start (the loop then watches it closely, since a
        job is billed from the moment it starts running).
        """
        # Every 50 ms while jobs are starting: read only the pending ones, not every active job.
        active = self.store.list_jobs(status=JobStatus.PENDING) if starting_only else self.store.active_jobs()
        now = time.time()
        watched = [row for row in active if row.dispatched]
        changes = [(row.id, self._observe(row, now)) for row in watched]
        changes = [(job_id, c) for job_id, c in changes if c]
        # Short transactions, so admissions waiting for the write lock never wait long.
        for i in range(0, len(changes), SYNC_BATCH):
            self.store.update_jobs(dict(changes[i:i + SYNC_BATCH]))
        starting = {job_id for job_id, c in changes if c.get("status", JobStatus.PENDING.value) == JobStatus.PENDING.value}
        if not starting_only:
            for row in active:
                if not row.dispatched:
                    self._dispatch(row)
        return bool(starting)

    def _refresh(self, row: JobRow) -> JobRow:
        """Bring one job's record up to date with the backend now."""
        changes = self._observe(row, time.time())
        return (self.store.update_job(row.id, **changes) if changes else None) or row

    def _observe(self, row: JobRow, now: float) -> dict:
        """The record changes the backend's view implies ({} when it cannot be reached)."""
        try:
            info = self.backend.info(row.backend_ref or row.id)
        except JobNotFound:
            ended = row.last_seen_at or now
            return {
                "status": JobStatus.FAILED.value,
                "ended_at": max(ended, row.started_at or ended),
                "message": "lost: the backend no longer knows this job (was the Ray cluster restarted?)",
                "logs": row.logs or "",
            }
        except BackendError as exc:
            log.warning("cannot refresh %s: %s", row.id, exc)
            return {}
        return self._changes_from(row, info, now)

    def _changes_from(self, row: JobRow, info: BackendJobInfo, now: float) -> dict:
        changes: dict = {"last_seen_at": now, "message": info.message if info.status.terminal else row.message}
        watched = row.last_seen_at is not None and now - row.last_seen_at <= _START_OBSERVATION_SLACK_SECONDS
        if info.status != JobStatus.PENDING and row.started_at is None:
            # Bill from when it started running: between our last look (still pending) and now. If
            # we were not watching, bill from when the backend accepted it.
            seen_start = (row.last_seen_at + now) / 2 if row.last_seen_at is not None else now
            changes["started_at"] = seen_start if (watched and info.status == JobStatus.RUNNING) else (info.start_time or now)
        if info.status.terminal:
            changes["ended_at"] = info.end_time or now
            changes["started_at"] = min(changes.get("started_at", row.started_at) or changes["ended_at"], changes["ended_at"])
            changes["logs"] = self._final_logs(row)
        changes["status"] = info.status.value
        return changes

    def _final_logs(self, row: JobRow) -> str:
        try:
            return self.backend.logs(row.backend_ref or row.id)
        except BackendError as exc:
            return f"[testbed] logs could not be read when the job ended: {exc}\n"

    # -- reads and stop -------------------------------------------------------------------
    def visible_job(self, principal: Principal, job_id: str, refresh: bool = True) -> JobRow:
        """The job if the caller may see it, else 404 (never revealing that it exists)."""
        row = self.store.get_job(job_id)
        if row is None or not principal.can_see(row.tenant):
            raise not_found(f"job {job_id!r}")
        if refresh and row.dispatched and not row.terminal:
            row = self._refresh(row)
        return row

    def list_jobs(self, principal: Principal, status: JobStatus | None = None, limit: int | None = None) -> list[JobRow]:
        tenant = None if principal.is_operator else principal.subject
        return self.store.list_jobs(tenant=tenant, status=status, limit=limit)

    def logs(self, principal: Principal, job_id: str) -> tuple[JobRow, str, bool]:
        row = self.visible_job(principal, job_id)
        if row.terminal:
            return row, row.logs or "", True
        if not row.dispatched:
            return row, "", False
        try:
            return row, self.backend.logs(row.backend_ref or row.id), False
        except BackendError as exc:
            raise ServiceError(503, "backend_unavailable", str(exc)) from None

    def stop(self, principal: Principal, job_id: str) -> JobRow:
        row = self.visible_job(principal, job_id)
        if row.terminal:
            return row
        if not row.dispatched:
            with self._tenant_locks[row.tenant]:
                current = self.store.get_job(job_id)
                if current is not None and not current.dispatched:
                    now = time.time()
                    return self.store.update_job(
                        job_id, status=JobStatus.STOPPED.value, ended_at=now, message="stopped before it started", logs=""
                    ) or row
        try:
            self.backend.stop(row.backend_ref or row.id)
        except JobNotFound:
            pass
        except BackendError as exc:
            raise ServiceError(503, "backend_unavailable", str(exc)) from None
        return self._refresh(self.store.get_job(job_id) or row)

