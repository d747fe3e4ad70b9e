"""A backend that runs nothing, for benchmarks and tests: a job whose entrypoint is ``sleep N``
"runs" N seconds, any other job succeeds at once. A job whose env sets ``NOOP_SUBMIT_SECONDS``
takes that long to submit, like a real backend's API call (tests widen race windows with it).

Given a PostgreSQL URL (the control plane passes its own database's), the jobs live in that
database's ``noop_jobs`` table, so every replica answers the same; each row also counts the submit
calls its job received (``submits``) and names the process that made the first (``submitter``,
``host:pid``), so a test can check that each job was handed over once. Otherwise (SQLite is one
process, and the caller may hold its single writer) they live in this process.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import asdict, dataclass

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, create_engine, func, select, update
from sqlalchemy.dialects import postgresql

from operators.control_plane.backends.base import Backend, BackendJobInfo, Capacity, JobNotFound, LaunchRequest
from operators.control_plane.migrate import lock_key
from testbed.jobs import JobStatus

SUBMITTER = f"{socket.gethostname()}:{os.getpid()}"
SUBMIT_SECONDS_ENV = "NOOP_SUBMIT_SECONDS"
_SLEEP = re.compile(r"\s*sleep\s+(\d+(?:\.\d*)?)\s*")

NOOP_JOBS = Table(
    "noop_jobs", MetaData(),
    Column("job_id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("submitted_at", Float, nullable=False),
    Column("run_seconds", Float, nullable=False),
    Column("submits", Integer, nullable=False),
    Column("submitter", String(128), nullable=False),
    Column("stopped_at", Float, nullable=True),
)


def run_seconds(entrypoint: str) -> float:
    """How long a job "runs": N for ``sleep N``, else 0."""
    match = _SLEEP.fullmatch(entrypoint)
    return float(match.group(1)) if match else 0.0


@dataclass
class NoopJob:
    """A job the no-op backend accepted."""

    tenant: str
    submitted_at: float
    run_seconds: float
    submits: int = 1
    submitter: str = SUBMITTER
    stopped_at: float | None = None
    held: JobStatus | None = None  # a test aid: report this status whatever happens (``NoopBackend.hold``)

    def info(self, now: float) -> BackendJobInfo:
        if self.held is not None:
            return BackendJobInfo(status=self.held, start_time=self.submitted_at)
        end = self.submitted_at + self.run_seconds
        if self.stopped_at is not None and self.stopped_at < end:
            return BackendJobInfo(status=JobStatus.STOPPED, message="stopped", start_time=self.submitted_at,
                                  end_time=self.stopped_at)
        if now < end:
            return BackendJobInfo(status=JobStatus.RUNNING, start_time=self.submitted_at)
        return BackendJobInfo(status=JobStatus.SUCCEEDED, start_time=self.submitted_at, end_time=end)


class NoopBackend(Backend):
    name = "noop"

    def __init__(self, database_url: str | None = None, capacity: Capacity | None = None) -> None:
        self._capacity = capacity or Capacity()
        self._jobs: dict[str, NoopJob] = {}  # every job (in memory), or the ended ones read back (PostgreSQL)
        self._lock = threading.Lock()
        self._engine = None
        if database_url and database_url.startswith("postgresql"):
            self._engine = create_engine(database_url, pool_size=4, max_overflow=8)
            with self._engine.begin() as conn:  # replicas starting together create it once
                conn.execute(select(func.pg_advisory_xact_lock(lock_key("testbed:noop_jobs"))))
                NOOP_JOBS.create(conn, checkfirst=True)

    def submit(self, request: LaunchRequest) -> str:
        time.sleep(float(request.runtime_env.env_vars.get(SUBMIT_SECONDS_ENV, 0)))
        job = NoopJob(tenant=request.tenant, submitted_at=time.time(), run_seconds=run_seconds(request.entrypoint))
        if self._engine is None:
            with self._lock:
                known = self._jobs.setdefault(request.job_id, job)
                if known is not job:
                    known.submits += 1
            return request.job_id
        insert = postgresql.insert(NOOP_JOBS).values(
            job_id=request.job_id, **{k: v for k, v in asdict(job).items() if k != "held"})
        with self._engine.begin() as conn:  # a second submit of a job adopts it, and is counted
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")  # a test aid's record: no fsync wait
            conn.execute(insert.on_conflict_do_update(index_elements=[NOOP_JOBS.c.job_id],
                                                      set_={"submits": NOOP_JOBS.c.submits + 1}))
        return request.job_id

    def hold(self, ref: str, status: JobStatus) -> None:
        """Report ``status`` for a job from now on (in-process jobs only): tests pin a job starting or running."""
        with self._lock:
            self._jobs[ref].held = status

    def job(self, ref: str) -> NoopJob:
        """The job as accepted (JobNotFound if it never was)."""
        with self._lock:
            job = self._jobs.get(ref)
        if job is None and self._engine is not None:
            with self._engine.connect() as conn:
                row = conn.execute(select(NOOP_JOBS).where(NOOP_JOBS.c.job_id == ref)).mappings().first()
            job = None if row is None else NoopJob(**{k: v for k, v in row.items() if k != "job_id"})
            if job is not None and job.info(time.time()).status.terminal:
                with self._lock:  # an ended job no longer changes: read it once
                    self._jobs[ref] = job
        if job is None:
            raise JobNotFound(f"no job {ref}")
        return job

    def info(self, ref: str) -> BackendJobInfo:
        return self.job(ref).info(time.time())

    def logs(self, ref: str) -> str:
        self.job(ref)
        return ""

    def stop(self, ref: str) -> None:
        self.job(ref)
        now = time.time()
        if self._engine is None:
            with self._lock:
                job = self._jobs[ref]
                job.stopped_at = job.stopped_at or now
            return
        with self._engine.begin() as conn:
            conn.execute(update(NOOP_JOBS).where(NOOP_JOBS.c.job_id == ref, NOOP_JOBS.c.stopped_at.is_(None))
                         .values(stopped_at=now))

    def capacity(self) -> Capacity:
        return self._capacity

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
