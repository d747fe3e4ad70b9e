"""Dispatch and reconcile: queued jobs go to the backend as their tenant's quota allows, and each
dispatched job's record follows what the backend reports until the job ends.

A job is billed from when it is observed running: the sync watches jobs about to start closely
and infers the start from its observations. When a job ends, its final status, times and logs are
stored, so they outlive the backend's memory of it.

With several replicas, only the holder of the reconciler lease (:mod:`.lease`) runs the background
sync; dispatch and stop of a tenant's jobs run in its database lock (``Store.tenant_lock``), where
the job is also marked dispatched, so a job is handed to the backend once whichever replica asks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Mapping

from operators.control_plane.backends.base import (
    NO_RESOURCES,
    Backend,
    BackendError,
    BackendJobInfo,
    JobNotFound,
    LaunchRequest,
    Resources,
    RuntimeEnv,
)
from operators.control_plane.errors import ServiceError
from operators.control_plane.lease import RECONCILER, Lease
from operators.control_plane.store import JobRow, Store
from testbed import jobs as J
from testbed.config import Tenant
from testbed.jobs import JobSpec, JobStatus
from testbed.settings import ControlPlaneSettings

log = logging.getLogger("testbed.control_plane")

# If we last looked at a job longer ago than this, we cannot tell when it started running and
# bill from the moment the backend accepted it.
START_OBSERVATION_SLACK_SECONDS = 2.0
SYNC_BATCH = 16  # job updates per sync transaction
START_WATCH_INTERVAL_SECONDS = 0.05  # how often jobs about to start are looked at


def launch_request(row: JobRow, settings: ControlPlaneSettings) -> LaunchRequest:
    """What the backend is asked to run for a job record: budget, driver's share, environment."""
    spec = JobSpec.model_validate({k: v for k, v in row.spec.items() if k != "kind"})
    budget = Resources(cpus=row.cpus, gpus=row.gpus, memory=row.memory_bytes)
    request = LaunchRequest(
        job_id=row.id, tenant=row.tenant, region=row.region, entrypoint=row.entrypoint, budget=budget,
        # A template drives Ray Train workers that reserve the job's resources themselves.
        driver=budget if row.template is None else NO_RESOURCES,
    )
    env = {
        **spec.env,
        J.ENV_MLFLOW_TRACKING_URI: settings.mlflow_tracking_uri,
        J.ENV_MLFLOW_EXPERIMENT_NAME: row.experiment,
        J.ENV_TENANT: row.tenant,
        J.ENV_JOB_ID: row.id,
        J.ENV_REGION: row.region,
        J.ENV_STORAGE_PATH: f"{settings.storage_path.rstrip('/')}/{row.tenant}/{row.id}",
        **budget.env(),
        J.ENV_RUN_TAGS: json.dumps(request.metadata),
    }
    return request.model_copy(update={"runtime_env": RuntimeEnv(env_vars=env, working_dir=spec.working_dir)})


def observed_changes(row: JobRow, info: BackendJobInfo, now: float) -> dict[str, Any]:
    """The record changes one observation of the backend implies (logs aside), billing start included."""
    changes: dict[str, Any] = {"last_seen_at": now, "message": info.message if info.status.terminal else row.message}
    watched = row.last_seen_at is not None and now - row.last_seen_at <= START_OBSERVATION_SLACK_SECONDS
    if info.status != JobStatus.PENDING and row.started_at is None:
        # Bill from when it started running: between our last look (still pending) and now. If
        # we were not watching, bill from when the backend accepted it.
        seen_start = (row.last_seen_at + now) / 2 if row.last_seen_at is not None else now
        changes["started_at"] = seen_start if (watched and info.status == JobStatus.RUNNING) else (info.start_time or now)
    if info.status.terminal:
        changes["ended_at"] = info.end_time or now
        changes["started_at"] = min(changes.get("started_at", row.started_at) or changes["ended_at"], changes["ended_at"])
    changes["status"] = info.status.value
    return changes


class Dispatcher:
    """Hands queued jobs to the backend and keeps every dispatched job's record in step with it."""

    def __init__(self, settings: ControlPlaneSettings, tenants: Mapping[str, Tenant], store: Store, backend: Backend):
        self.settings = settings
        self.tenants = tenants
        self.store = store
        self.backend = backend
        self.lease = Lease(store, RECONCILER, settings.lease_ttl_seconds, settings.lease_renew_seconds)
        self.synced_at: float | None = None  # when this replica last completed a full sync round
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def reconciling(self) -> bool:
        """This replica holds the reconciler lease and has completed a sync round under it."""
        acquired = self.lease.acquired_at
        return (self.lease.holding and acquired is not None and self.synced_at is not None
                and self.synced_at >= acquired)

    # -- the background sync --------------------------------------------------------------
    def start(self) -> None:
        """Start the background sync (status, logs, queued jobs)."""
        if self._thread is None:
            self.lease.start()
            self._thread = threading.Thread(target=self._loop, name="job-sync", daemon=True)
            self._thread.start()

    def stop_sync(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.lease.release()

    def _loop(self) -> None:
        """Refresh every active job each interval (while holding the reconciler lease); jobs about
        to start are watched more closely."""
        last_full = 0.0
        watching_starts = False
        interval = self.settings.sync_interval_seconds
        while not self._stopping.wait(START_WATCH_INTERVAL_SECONDS if watching_starts else interval):
            if not self.lease.holding:
                watching_starts = False
                continue
            full = time.monotonic() - last_full >= interval
            try:
                watching_starts = self.sync_once(starting_only=not full)
                if full:
                    self.synced_at = time.time()
            except Exception:  # keep syncing; a bad round must not stop the loop
                log.exception("job sync round failed")
            if full:
                last_full = time.monotonic()

    def sync_once(self, starting_only: bool = False) -> bool:
        """One round: refresh dispatched jobs, then dispatch queued ones.

        With ``starting_only`` (every ``START_WATCH_INTERVAL_SECONDS`` while jobs are starting),
        only the pending jobs are read and refreshed. Returns whether any dispatched job is still
        waiting to start (the loop then watches it closely, since a job is billed from then).
        """
        active = self.store.list_jobs(status=JobStatus.PENDING) if starting_only else self.store.active_jobs()
        now = time.time()
        changes = [(row.id, self._observe(row, now)) for row in active if row.dispatched]
        changes = [(job_id, c) for job_id, c in changes if c]
        # Short transactions, so admissions waiting for the write lock never wait long.
        for i in range(0, len(changes), SYNC_BATCH):
            self.store.update_jobs(dict(changes[i:i + SYNC_BATCH]))
        starting = {job_id for job_id, c in changes if c.get("status", JobStatus.PENDING.value) == JobStatus.PENDING.value}
        if not starting_only:
            for row in active:
                if not row.dispatched:
                    self._try_dispatch(row)
        return bool(starting)

    # -- dispatch -------------------------------------------------------------------------
    def dispatch(self, row: JobRow) -> JobRow:
        """Hand an admitted job to the backend now if it fits; else it stays queued for the sync."""
        return self._try_dispatch(row) or row

    def _try_dispatch(self, row: JobRow) -> JobRow | None:
        """Hand a queued job to the backend if the tenant has room; return the updated row."""
        with self.store.tenant_lock(row.tenant):
            current = self.store.get_job(row.id)
            if current is None or current.dispatched or current.terminal:
                return current
            reason = self._fits_now(current)
            if reason is not None:
                return self.store.update_job(row.id, message=reason)
            try:
                ref = self.backend.submit(launch_request(current, self.settings))
            except BackendError as exc:
                return self.store.update_job(row.id, message=f"queued: waiting for the backend: {exc}")
            return self.store.update_job(row.id, dispatched=True, backend_ref=ref, message="", last_seen_at=time.time())

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

    # -- reconcile ------------------------------------------------------------------------
    def refresh(self, row: JobRow) -> JobRow:
        """Bring one job's record up to date with the backend now."""
        changes = self._observe(row, time.time())
        return (self.store.update_job(row.id, **changes) if changes else None) or row

    def _observe(self, row: JobRow, now: float) -> dict[str, Any]:
        """The record changes the backend's view implies ({} when it cannot be reached)."""
        try:
            info = self.backend.info(row.backend_ref or row.id)
        except JobNotFound:
            row = self.store.get_job(row.id) or row  # with a stop recorded (by any replica) since it was read
            ended = row.last_seen_at or now
            if row.stop_requested_at is not None:  # stopped by us, then forgotten (a deleted RayJob)
                ended = max(row.stop_requested_at, row.started_at or row.stop_requested_at)
                return {"status": JobStatus.STOPPED.value, "ended_at": ended, "message": "stopped", "logs": row.logs or ""}
            return {
                "status": JobStatus.FAILED.value,
                "ended_at": max(ended, row.started_at or ended),
                "message": "lost: the backend no longer knows this job (was the Ray cluster restarted?)",
                "logs": row.logs or "",
            }
        except BackendError as exc:
            log.warning("cannot refresh %s: %s", row.id, exc)
            return {}
        changes = observed_changes(row, info, now)
        if info.status.terminal:
            changes["logs"] = self._final_logs(row)
        return changes

    def _final_logs(self, row: JobRow) -> str:
        try:
            return self.backend.logs(row.backend_ref or row.id)
        except BackendError as exc:
            return f"[testbed] logs could not be read when the job ended: {exc}\n"

    def stop(self, row: JobRow) -> JobRow:
        """Stop a job: a queued one is marked STOPPED at once, a dispatched one is stopped by the backend."""
        with self.store.tenant_lock(row.tenant):
            row = self.store.get_job(row.id) or row
            if row.terminal:
                return row
            if not row.dispatched:
                return self.store.update_job(
                    row.id, status=JobStatus.STOPPED.value, ended_at=time.time(), message="stopped before it started", logs=""
                ) or row
        # Recorded first, with the output so far: any replica then reports it STOPPED with its logs.
        self.store.update_job(row.id, stop_requested_at=time.time(), logs=self._final_logs(row))
        try:
            self.backend.stop(row.backend_ref or row.id)
        except JobNotFound:
            pass
        except BackendError as exc:
            raise ServiceError(503, "backend_unavailable", str(exc)) from None
        return self.refresh(self.store.get_job(row.id) or row)
