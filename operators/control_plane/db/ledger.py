"""The ledger: allocated resource-seconds per tenant, from job records.

A job is metered from ``started_at`` to ``ended_at`` times what it requested: CPUs, GPUs (by GPU
model) and memory, whatever its final status (succeeded, failed or stopped). A running job is
metered up to the last time the control plane saw it running (``last_seen_at``, at most one sync
interval behind now; now if it was never seen): its true end time, learned later, is never earlier,
so exported counters never go backwards.

Finished jobs are folded into ``usage_totals`` (one row per tenant and GPU model) by a hook that
runs inside the transaction that ends the job, so a snapshot costs one small query: the totals
plus the jobs still active, read by a single statement (one consistent view of both).

A fold is idempotent, keyed by job: it inserts the job's row into ``usage_jobs`` (``ON CONFLICT DO
NOTHING``) and adds to the totals only when that row is new, in the same transaction. A fold
repeated after a crash, or by another replica, adds nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from sqlalchemy import delete, exists, literal, null, select, union_all
from sqlalchemy.orm import Session

from operators.control_plane.db.models import JobRow, UsageJobRow, UsageTotalRow
from operators.control_plane.db.engine import DIALECT_INSERTS
from operators.control_plane.db.store import Store
from testbed.jobs import TERMINAL_STATUSES, JobStatus

NO_GPU = ""  # gpu_model key of the totals row for jobs without GPUs
UNKNOWN_GPU_MODEL = "unknown"
STATUSES = [s.value for s in JobStatus]
_FINISHED = [s.value for s in JobStatus if s in TERMINAL_STATUSES]
_ACTIVE = [s.value for s in JobStatus if s not in TERMINAL_STATUSES]


_JOB_COUNTERS = {
    JobStatus.SUCCEEDED.value: "jobs_succeeded",
    JobStatus.FAILED.value: "jobs_failed",
    JobStatus.STOPPED.value: "jobs_stopped",
}


def metered_seconds(started_at: float | None, until: float | None) -> float:
    """Seconds a job held its resources: zero if it never started."""
    if started_at is None or until is None:
        return 0.0
    return max(0.0, until - started_at)


def running_until(last_seen_at: float | None, now: float) -> float:
    """Where a running job's metering stops for now (see the module docstring)."""
    return now if last_seen_at is None else min(now, last_seen_at)


def gpu_key(gpus: int, gpu_model: str | None) -> str:
    return NO_GPU if not gpus else (gpu_model or UNKNOWN_GPU_MODEL)


@dataclass
class TenantMeter:
    """Allocated use of one tenant at one moment (finished plus active jobs)."""

    tenant: str
    cpu_seconds: float = 0.0
    memory_byte_seconds: float = 0.0
    gpu_seconds: dict[str, float] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    @property
    def gpu_seconds_total(self) -> float:
        return sum(self.gpu_seconds.values())

    def add(self, model: str, cpu: float, gpu: float, memory: float) -> None:
        self.cpu_seconds += cpu
        self.memory_byte_seconds += memory
        if model != NO_GPU:
            self.gpu_seconds[model] = self.gpu_seconds.get(model, 0.0) + gpu


def fold_jobs(session: Session, rows: list[JobRow]) -> None:
    """``Store.on_terminal`` hook: add jobs that just ended to their tenants' totals, each once (one INSERT of the
    usage rows; the totals of the rows it wrote move by one upsert per tenant and GPU model)."""
    usage = []
    for row in rows:
        if row.status not in _JOB_COUNTERS:
            continue
        seconds = metered_seconds(row.started_at, row.ended_at if row.ended_at is not None else time.time())
        used = {
            "cpu_seconds": row.cpus * seconds,
            "gpu_seconds": row.gpus * seconds,
            "memory_byte_seconds": float(row.memory_bytes) * seconds,
        }
        model = gpu_key(row.gpus, row.gpu_model)
        usage.append({"job_id": row.id, "tenant": row.tenant, "gpu_model": model, "status": row.status, **used})
    if not usage:
        return
    conn = session.connection()
    written = set(conn.execute(_fold_once(conn.dialect.name), usage).scalars())  # the rows not folded before
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for job in usage:
        if job["job_id"] in written:
            total = totals.setdefault((job["tenant"], job["gpu_model"]), dict(_ZERO_TOTALS))
            for name in ("cpu_seconds", "gpu_seconds", "memory_byte_seconds"):
                total[name] += job[name]
            total[_JOB_COUNTERS[job["status"]]] += 1
    if totals:  # in one order (sorted): replicas folding at once never wait on each other's rows in a cycle
        increments = [{"tenant": t, "gpu_model": m, **totals[t, m]} for t, m in sorted(totals)]
        conn.execute(_totals_upsert(conn.dialect.name), increments)


@lru_cache(maxsize=None)
def _fold_once(dialect: str) -> Any:
    """INSERT a finished job's usage row unless it is there (its job id comes back only if it was written)."""
    usage = UsageJobRow.__table__
    return (
        DIALECT_INSERTS[dialect](usage)
        .on_conflict_do_nothing(index_elements=[usage.c.job_id])
        .returning(usage.c.job_id)
    )


_ZERO_TOTALS = {
    "cpu_seconds": 0.0,
    "gpu_seconds": 0.0,
    "memory_byte_seconds": 0.0,
    "jobs_succeeded": 0,
    "jobs_failed": 0,
    "jobs_stopped": 0,
}


@lru_cache(maxsize=None)
def _totals_upsert(dialect: str) -> Any:
    """Add to a totals row in SQL (``x = x + v``), creating it on first use: one atomic INSERT ... ON CONFLICT DO
    UPDATE, so two replicas folding into the same row never lose or double an increment."""
    table = UsageTotalRow.__table__
    insert = DIALECT_INSERTS[dialect](table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.tenant, table.c.gpu_model],
        set_={name: table.c[name] + insert.excluded[name] for name in _ZERO_TOTALS},
    )


class Ledger:
    """Reads and maintains per-tenant allocated use in a control plane's store."""

    def __init__(self, store: Store):
        dialect = store.engine.dialect.name
        if dialect not in DIALECT_INSERTS:
            raise ValueError(f"metering needs a SQLite or PostgreSQL database, not {dialect!r}")
        self.store = store

    def install(self) -> None:
        """Hook into job completion (once) and fold in finished jobs not folded yet."""
        if fold_jobs not in self.store.on_terminal:
            self.store.on_terminal.append(fold_jobs)
        self.backfill()

    def backfill(self) -> None:
        """Fold every finished job that has no usage row yet (idempotent; any replica, any time)."""
        folded = exists().where(UsageJobRow.job_id == JobRow.id)
        with self.store.write_session() as s:
            fold_jobs(s, list(s.scalars(select(JobRow).where(JobRow.status.in_(_FINISHED), ~folded))))

    def rebuild(self) -> None:
        """Recompute the usage rows and totals from every finished job (a repair: one replica running)."""
        with self.store.write_session() as s:
            s.execute(delete(UsageJobRow))
            s.execute(delete(UsageTotalRow))
            fold_jobs(s, list(s.scalars(select(JobRow).where(JobRow.status.in_(_FINISHED)))))

    def snapshot(self, now: float | None = None, tenants: Iterable[str] | None = None) -> dict[str, TenantMeter]:
        """Allocated use per tenant right now: finished totals plus active jobs, one statement."""
        now = time.time() if now is None else now
        t, j = UsageTotalRow.__table__.c, JobRow.__table__.c
        totals = select(
            t.tenant,
            t.gpu_model,
            null().label("gpus"),
            null().label("status"),
            t.cpu_seconds,
            t.gpu_seconds,
            t.memory_byte_seconds,
            t.jobs_succeeded,
            t.jobs_failed,
            t.jobs_stopped,
            null().label("started_at"),
            null().label("until"),
        )
        active = select(
            j.tenant,
            j.gpu_model,
            j.gpus,
            j.status,
            j.cpus,
            literal(0.0),
            j.memory_bytes,
            literal(0),
            literal(0),
            literal(0),
            j.started_at,
            j.last_seen_at,
        ).where(j.status.in_(_ACTIVE))
        wanted = None if tenants is None else set(tenants)
        meters: dict[str, TenantMeter] = {}
        with self.store.session() as s:
            rows = s.execute(union_all(totals, active)).all()
        for tenant, model, gpus, status, cpu, gpu, memory, succeeded, failed, stopped, started, seen in rows:
            if wanted is not None and tenant not in wanted:
                continue
            meter = meters.get(tenant)
            if meter is None:
                meter = meters[tenant] = TenantMeter(tenant)
            jobs = meter.jobs
            if status is None:  # a totals row: already seconds
                meter.add(model, cpu, gpu, memory)
                jobs["SUCCEEDED"] += succeeded
                jobs["FAILED"] += failed
                jobs["STOPPED"] += stopped
            else:  # an active job: cpu/memory columns hold the request
                jobs[status] = jobs.get(status, 0) + 1
                if status == "RUNNING":
                    seconds = metered_seconds(started, running_until(seen, now))
                    meter.add(gpu_key(gpus, model), cpu * seconds, gpus * seconds, memory * seconds)
        return meters

    def gpu_burn(
        self, tenants: Iterable[str] | None = None, now: float | None = None
    ) -> dict[str, list[tuple[float, float]]]:
        """Cumulative allocated GPU-seconds per tenant at each job start/end (for burn-down plots)."""
        now = time.time() if now is None else now
        query = select(
            JobRow.tenant, JobRow.gpus, JobRow.status, JobRow.started_at, JobRow.ended_at, JobRow.last_seen_at
        ).where(JobRow.gpus > 0, JobRow.started_at.is_not(None))
        if tenants is not None:
            query = query.where(JobRow.tenant.in_(list(tenants)))
        events: dict[str, list[tuple[float, int]]] = {}
        with self.store.session() as s:
            for tenant, gpus, status, started, ended, seen in s.execute(query):
                if status in _FINISHED:
                    until = ended if ended is not None else started
                elif status == "RUNNING":
                    until = running_until(seen, now)
                else:
                    continue
                events.setdefault(tenant, []).extend([(started, gpus), (max(started, until), -gpus)])
        series: dict[str, list[tuple[float, float]]] = {}
        for tenant, items in events.items():
            items.sort()
            points, total, rate, last = [], 0.0, 0, items[0][0]
            for when, delta in items:
                total += rate * (when - last)
                rate, last = rate + delta, when
                points.append((when, total))
            series[tenant] = points
        return series
