"""Dispatch and reconcile: queued jobs go to the backend as their tenant's quota allows, and each
dispatched job's record follows what the backend reports until the job ends.

A job is billed from when it is observed running, never from when the backend accepted it: the
sync watches jobs about to start closely and infers the start from its observations; a job that
never ran bills nothing. When a job ends, its final status, times and logs are stored, so they
outlive the backend's memory of it. A job can be stopped in every state.

With several replicas, only the holder of the reconciler lease (:mod:`.lease`) runs the background
sync; dispatch and stop of a tenant's jobs run in its section (``Store.tenant_section``: the tenant's
database lock on PostgreSQL, a lock in the one process on SQLite, where the backend call then holds
no database lock), where the job is also marked dispatched, so a job is handed to the backend once
whichever replica asks.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping

from operators.control_plane.backends.base import (
    Backend,
    BackendAnswer,
    BackendError,
    JobNotFound,
    PermanentBackendError,
)
from operators.control_plane.errors import ServiceError
from operators.control_plane.db.lease import RECONCILER, Lease
from operators.control_plane.db import money_rounds
from operators.control_plane.db.money import MoneyLedger
from operators.control_plane.db.held import NOTHING_HELD, QueuedJob
from operators.control_plane.db.store import JobRow, Store
from operators.control_plane.launch import launch_request
from operators.control_plane.room import no_room, waits_for_room
from operators.control_plane.observation import backend_ref, observed_changes
from testbed.clock import SYSTEM_CLOCK, Clock
from testbed.config import Tenant
from testbed.jobs import JobStatus
from testbed.settings import ControlPlaneSettings
from testbed.errors import ErrorCode

log = logging.getLogger("testbed.control_plane")

SYNC_BATCH = 16  # job updates per sync transaction
START_WATCH_INTERVAL_SECONDS = 0.05  # how often jobs about to start are looked at
DISPATCH_BATCH = 16  # queued jobs of one tenant handed to the backend in one hold of its lock
RESTOP_SECONDS = 10.0  # a job the reconciler must stop (max run time, grant) is asked again after this long


STOP_SETTLE_SECONDS = 3.0  # how long a stop waits for the backend's word on a job that was starting


class Dispatcher:
    """Hands queued jobs to the backend and keeps every dispatched job's record in step with it."""

    def __init__(
        self,
        settings: ControlPlaneSettings,
        tenants: Mapping[str, Tenant],
        store: Store,
        backend: Backend,
        mlflow_env: Callable[[str], dict[str, str]] | None = None,
        money: MoneyLedger | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.settings = settings
        self.money = money
        self.charged_at: float | None = None  # when this replica last charged running jobs
        self.on_round: list[Callable[[], Any]] = []  # called about every second by the sync thread of every replica
        self.mlflow_env = mlflow_env
        self.tenants = tenants
        self.store = store
        self.backend = backend
        self.clock = clock
        self.lease = Lease(store, RECONCILER, settings.lease_ttl_seconds, settings.lease_renew_seconds, clock=clock)
        self.synced_at: float | None = None  # when this replica last completed a full sync round
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def reconciling(self) -> bool:
        """This replica holds the reconciler lease and has completed a sync round under it."""
        acquired = self.lease.acquired_at
        return self.lease.holding and acquired is not None and self.synced_at is not None and self.synced_at >= acquired

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
        hooks_at = 0.0
        while not self._stopping.wait(START_WATCH_INTERVAL_SECONDS if watching_starts else interval):
            if self.clock.monotonic() - hooks_at >= 1.0:  # every replica, lease or not (e.g. the stack file's reload)
                hooks_at = self.clock.monotonic()
                for hook in self.on_round:
                    try:
                        hook()
                    except Exception:
                        log.exception("sync hook failed")
            if not self.lease.holding:
                watching_starts = False
                continue
            full = self.clock.monotonic() - last_full >= interval
            try:
                watching_starts = self.sync_once(starting_only=not full)
                if full:
                    self.synced_at = self.clock.time()
            except Exception:  # keep syncing; a bad round must not stop the loop
                log.exception("job sync round failed")
            if full:
                last_full = self.clock.monotonic()

    def sync_once(self, starting_only: bool = False) -> bool:
        """One round: refresh dispatched jobs, then dispatch queued ones.

        With ``starting_only`` (every ``START_WATCH_INTERVAL_SECONDS`` while jobs are starting),
        only the pending jobs are read and refreshed. Returns whether any dispatched job is still
        waiting to start (the loop then watches it closely, since a job is billed from then),
        unless the backend reports start times itself. The backend is read in one batch
        (``info_many``: the kuberay backend lists per namespace, it does not GET per job).
        """
        dispatched = self.store.dispatched_jobs(status=JobStatus.PENDING if starting_only else None)
        now = self.clock.time()
        answers = self.backend.info_many([backend_ref(row) for row in dispatched]) if dispatched else {}
        no_answer = BackendError("the backend gave no answer for it")
        changes = [(row.id, self._observe(row, now, answers.get(backend_ref(row), no_answer))) for row in dispatched]
        changes = [(job_id, c) for job_id, c in changes if c]
        # Short transactions, so admissions waiting for the write lock never wait long.
        for i in range(0, len(changes), SYNC_BATCH):
            self.store.update_jobs(dict(changes[i : i + SYNC_BATCH]))
        starting = {
            job_id for job_id, c in changes if c.get("status", JobStatus.PENDING.value) == JobStatus.PENDING.value
        }
        if not starting_only and self.money is not None:
            self.money_round(now)
        if not starting_only:
            self.dispatch_queued()
        return bool(starting) and self.backend.watch_starts

    def dispatch_queued(self) -> int:
        """Hand queued jobs to the backend, oldest first, as far as each tenant's room allows; how many went.

        The queue is read as a few columns per job and the tenants' running jobs as one grouped read;
        the jobs that fit by those numbers are tried, each tenant's in one hold of its lock (up to
        ``DISPATCH_BATCH`` at a time), where each is checked again. A tenant's first job that does
        not fit gets the reason in its message (when it has none of its jobs tried this round and the
        reason changed), so a long queue behind a full tenant costs no writes."""
        queued = self.store.queued_jobs()
        if not queued:
            return 0
        held = self.store.held_by_tenant()
        candidates: dict[str, list[QueuedJob]] = {}
        told: set[str] = set()
        for job in queued:
            tenant = self.tenants.get(job.tenant)
            if tenant is None:
                continue
            mine = held.get(job.tenant, NOTHING_HELD)
            # A backend that queues jobs itself (Kueue) gets them at once: one queue, not two.
            reason = None if self.backend.queues_jobs else no_room(tenant, mine, job)
            if reason is None:
                candidates.setdefault(job.tenant, []).append(job)
                held[job.tenant] = mine.plus(job)
            elif job.tenant not in told:
                told.add(job.tenant)
                if job.tenant not in candidates and job.message != reason:
                    self.store.update_job(job.id, message=reason)
        sent = 0
        for tenant_id, jobs in candidates.items():
            for i in range(0, len(jobs), DISPATCH_BATCH):
                went, stopped = self._dispatch_many(tenant_id, jobs[i : i + DISPATCH_BATCH])
                sent += went
                if stopped:
                    break
        return sent

    def _dispatch_many(self, tenant: str, jobs: list[QueuedJob]) -> tuple[int, bool]:
        """:meth:`_try_dispatch` for some of a tenant's queued jobs, oldest first, in one hold of its section
        (PostgreSQL: one transaction); (how many went, whether one did not and the rest were left for the next round)."""
        went = 0
        with self.store.tenant_section(tenant):
            for job in jobs:
                row = self._try_dispatch(job)  # joins the section's transaction
                if row is not None and row.dispatched and row.backend_ref is not None and not row.terminal:
                    went += 1
                elif row is not None and not row.dispatched and not row.terminal:
                    return went, True  # no room after all (or the backend is not answering)
        return went, False

    def money_round(self, now: float) -> None:
        """Charge running jobs (every ``charge_interval_seconds``) and release the holds of grants that ended, then stop those past their max run time or, in
        ``stop`` mode, past their grant or its period; warn at 90%."""
        assert self.money is not None
        if self.charged_at is None or now - self.charged_at >= self.settings.charge_interval_seconds:
            money_rounds.accrue_running(self.money, now)
            self.charged_at = now
            for job_id in money_rounds.release_ended(self.money, now):
                log.info("hold of %s released: its grant (or the budget) ended", job_id)
        running = self.store.list_jobs(status=JobStatus.RUNNING)
        stops, warnings = money_rounds.verdicts(self.money, running, now)
        for row in running:
            if row.id in stops and row.stop_requested_at is not None and now - row.stop_requested_at < RESTOP_SECONDS:
                continue  # asked already: the backend is stopping it (asked again if it has not after a while)
            if row.id in stops:
                try:
                    self.stop(row, reason=stops[row.id])
                except ServiceError as exc:
                    log.warning("cannot stop %s (%s): %s", row.id, stops[row.id], exc.message)
            elif row.id in warnings and row.message != warnings[row.id]:
                self.store.update_job(row.id, message=warnings[row.id])

    # -- dispatch -------------------------------------------------------------------------
    def dispatch(self, row: JobRow) -> JobRow:
        """Hand an admitted job to the backend now if it fits; else it stays queued for the sync. A job that
        admission found no room for (its message says so) is not tried: only an end makes room, and the sync
        that sees the end hands the queue on, oldest first."""
        if not row.dispatched and waits_for_room(row.message):
            return row
        return self._try_dispatch(row) or row

    def _try_dispatch(self, row: JobRow | QueuedJob) -> JobRow | None:
        """Hand a queued job to the backend if the tenant has room; return the updated row."""
        with self.store.tenant_section(row.tenant):
            # A whole record (admission's) is read again only for whether it still waits, with the tenant's room.
            held = self.store.held_if_queued(row.tenant, row.id) if isinstance(row, JobRow) else None
            current = row if isinstance(row, JobRow) and held is not None else self.store.get_job(row.id)
            if current is None or current.dispatched or current.terminal:
                return current
            # A backend that queues jobs itself (Kueue) gets them at once: one queue, not two.
            reason = None
            if not self.backend.queues_jobs:
                held = held if held is not None else self.store.held_by(row.tenant, exclude=row.id)
                reason = no_room(self.tenants[row.tenant], held, current)
            if reason is not None:
                return self.store.tell_queued(current, reason)
            try:
                ref = self.backend.submit(launch_request(current, self.settings, self.mlflow_env))
            except PermanentBackendError as exc:  # retrying gets the same answer: fail it once
                log.warning("backend refused %s for good: %s", row.id, exc)
                return self.store.update_job(
                    row.id,
                    status=JobStatus.FAILED.value,
                    ended_at=self.clock.time(),
                    logs="",
                    message=f"refused by the backend: {exc}",
                )
            except BackendError as exc:
                return self.store.update_job(row.id, message=f"queued: waiting for the backend: {exc}")
            return self.store.mark_dispatched(current, ref, self.clock.time())

    # -- reconcile ------------------------------------------------------------------------
    def refresh(self, row: JobRow) -> JobRow:
        """Bring one job's record up to date with the backend now."""
        changes = self._observe(row, self.clock.time())
        return (self.store.update_job(row.id, **changes) if changes else None) or row

    def _observe(self, row: JobRow, now: float, answer: BackendAnswer | None = None) -> dict[str, Any]:
        """The record changes the backend's view implies ({} when it cannot be reached).

        ``answer``: what a batched read (``info_many``) said of the job; without it the backend is asked now.
        """
        try:
            if answer is None:
                answer = self.backend.info(backend_ref(row))
            if isinstance(answer, BackendError):
                raise answer
            info = answer
        except JobNotFound:
            row = self.store.get_job(row.id) or row  # with a stop recorded (by any replica) since it was read
            ended = row.last_seen_at or now
            if row.stop_requested_at is not None:  # stopped by us, then forgotten (a deleted RayJob)
                ended = max(row.stop_requested_at, row.started_at or row.stop_requested_at)
                return {
                    "status": JobStatus.STOPPED.value,
                    "ended_at": ended,
                    "message": "stopped",  # unless the testbed gave its reason (kept by the store)
                    "logs": row.logs or "",
                }
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

    def stop(self, row: JobRow, reason: str | None = None) -> JobRow:
        """Stop a job in any state; its message says what was done.

        Queued: STOPPED at once. Dispatched but not started: the backend is told to stop it, and what
        it then reports within ``STOP_SETTLE_SECONDS`` is recorded (an entrypoint that ran meanwhile
        is billed from when the backend saw it start, its output kept); a job the backend still holds
        unstarted is STOPPED, never billed. Running: the backend stops it; the record follows when the backend says so.
        The stop and the output so far are recorded before the backend is asked, so any replica
        reports the job STOPPED with its logs once the backend forgets it.
        """
        with self.store.tenant_section(row.tenant):
            row = self.store.get_job(row.id) or row
            if row.terminal:
                return row
            if not row.dispatched:
                return self._stopped(row, reason or "stopped while queued: it never reached the backend")
        # Recorded first, with the output so far: any replica then reports it STOPPED with its logs.
        self.store.update_job(
            row.id,
            stop_requested_at=self.clock.time(),
            logs=self._final_logs(row),
            **({"message": reason} if reason else {}),
        )
        try:
            self.backend.stop(row.backend_ref or row.id)
        except JobNotFound:
            pass
        except BackendError as exc:
            raise ServiceError(ErrorCode.BACKEND_UNAVAILABLE, str(exc)) from None
        row = self.refresh(self.store.get_job(row.id) or row)
        # A job stopped while starting may have had its entrypoint run meanwhile: give the backend a moment to say
        # what it did (its end, whether the entrypoint ran: billed from then, its output kept) before recording it
        # as never run.
        settle = time.monotonic() + STOP_SETTLE_SECONDS  # real seconds: the backend answers in real time
        while not row.terminal and row.started_at is None and time.monotonic() < settle:
            time.sleep(0.2)
            row = self.refresh(self.store.get_job(row.id) or row)
        if row.terminal:
            return row
        if row.started_at is None:
            row = self.store.update_job(row.id, logs=self._final_logs(row)) or row
            return self._stopped(row, "stopped while starting: the backend was told to stop it before it ran")
        return self.store.update_job(row.id, message=reason or "stopping: the backend was asked to stop it") or row

    def _stopped(self, row: JobRow, message: str) -> JobRow:
        return (
            self.store.update_job(
                row.id, status=JobStatus.STOPPED.value, ended_at=self.clock.time(), message=message, logs=row.logs or ""
            )
            or row
        )
