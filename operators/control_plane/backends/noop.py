"""A backend that runs nothing, for benchmarks and tests: a job whose entrypoint is ``sleep N``
"runs" N seconds, any other job succeeds at once.

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

from sqlalchemy import bindparam, create_engine, func, select, update
from sqlalchemy.dialects import postgresql

from operators.control_plane.backends.base import Backend, BackendJobInfo, Capacity, JobNotFound, LaunchRequest
from operators.control_plane.db.migrate import lock_key
from operators.control_plane.db.models import NOOP_JOBS
from testbed.jobs import JobStatus

SUBMITTER = f"{socket.gethostname()}:{os.getpid()}"
_SLEEP = re.compile(r"\s*sleep\s+(\d+(?:\.\d*)?)\s*")


# Built once (a statement built per call cost more than its round trip): a second submit of a job adopts it, and is
# counted; a stop is recorded once.
_SUBMIT = postgresql.insert(NOOP_JOBS).on_conflict_do_update(
    index_elements=[NOOP_JOBS.c.job_id], set_={"submits": NOOP_JOBS.c.submits + 1}
)
_STOP = (
    update(NOOP_JOBS)
    .where(NOOP_JOBS.c.job_id == bindparam("ref"), NOOP_JOBS.c.stopped_at.is_(None))
    .values(stopped_at=bindparam("now"))
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

    def info(self, now: float) -> BackendJobInfo:
        end = self.submitted_at + self.run_seconds
        if self.stopped_at is not None and self.stopped_at < end:
            return BackendJobInfo(
                status=JobStatus.STOPPED, message="stopped", start_time=self.submitted_at, end_time=self.stopped_at
            )
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
            # a test aid's records: commits that wait for no fsync, each statement its own transaction (a submit is
            # one round trip), on connections that stay in autocommit (none switched on each checkout)
            self._engine = create_engine(
                database_url,
                isolation_level="AUTOCOMMIT",
                pool_size=8,
                max_overflow=4,
                connect_args={"options": "-c synchronous_commit=off"},
            )
            with self._engine.connect() as conn:  # replicas starting together create it once
                conn = conn.execution_options(isolation_level="READ COMMITTED")
                with conn.begin():
                    conn.execute(select(func.pg_advisory_xact_lock(lock_key("testbed:noop_jobs"))))
                    NOOP_JOBS.create(conn, checkfirst=True)

    def submit(self, request: LaunchRequest) -> str:
        job = NoopJob(tenant=request.tenant, submitted_at=time.time(), run_seconds=run_seconds(request.entrypoint))
        if self._engine is None:
            with self._lock:
                known = self._jobs.setdefault(request.job_id, job)
                if known is not job:
                    known.submits += 1
            return request.job_id
        with self._engine.connect() as conn:  # a second submit of a job adopts it, and is counted
            conn.execute(_SUBMIT, {"job_id": request.job_id, **asdict(job)})
        return request.job_id

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
        with self._engine.connect() as conn:
            conn.execute(_STOP, {"ref": ref, "now": now})

    def capacity(self) -> Capacity:
        return self._capacity

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
