"""What a tenant's unfinished jobs hold and how many wait: the hot reads of admission and dispatch, built once (a
statement built per call costs more than its query), and the rows they give."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, bindparam, false, func, literal, select, true

from operators.control_plane.db.models import JobRow
from testbed.jobs import TERMINAL_STATUSES, JobStatus

# Unfinished jobs, named positively so the status index serves the reads (finished jobs are not scanned).
ACTIVE_STATUSES = [status.value for status in JobStatus if status not in TERMINAL_STATUSES]
# ``status IN (...)`` with one bound parameter per status, compiled once with each statement. ``in_`` given a list of
# values makes it one "expanding" parameter instead, whose SQL is rendered again at every execution: 10 to 40 us a
# query here, in the reads of every admission, dispatch and sync round.
UNFINISHED: ColumnElement[bool] = JobRow.status.in_([literal(status) for status in ACTIVE_STATUSES])


class Held(NamedTuple):
    """What a tenant's dispatched, unfinished jobs hold."""

    jobs: int
    cpus: float
    gpus: int
    memory_bytes: int

    @classmethod
    def of(cls, sums: Any) -> "Held":
        """From a row of :data:`HELD_SUMS`'s columns (count, CPUs, GPUs, memory)."""
        count, cpus, gpus, memory = sums
        return cls(int(count), float(cpus), int(gpus), int(memory))

    def plus(self, job: "QueuedJob | JobRow") -> "Held":
        """What they hold once ``job`` is dispatched too."""
        return Held(self.jobs + 1, self.cpus + job.cpus, self.gpus + job.gpus, self.memory_bytes + job.memory_bytes)


NOTHING_HELD = Held(0, 0.0, 0, 0)


class TenantJobs(NamedTuple):
    """A tenant's unfinished jobs as admission counts them: how many wait (admitted, not dispatched), what the
    dispatched ones hold."""

    queued: int
    held: Held


# What dispatched, unfinished jobs hold: (count, CPUs, GPUs, memory).
HELD_SUMS = (
    func.count(JobRow.id),
    func.coalesce(func.sum(JobRow.cpus), 0.0),
    func.coalesce(func.sum(JobRow.gpus), 0),
    func.coalesce(func.sum(JobRow.memory_bytes), 0),
)
# ``= true``, not ``IS TRUE``: PostgreSQL's planner uses an index on ``dispatched`` only for the former.
DISPATCHED_UNFINISHED = (JobRow.dispatched == true(), UNFINISHED)


def _waiting(*where: Any) -> Any:
    """How many admitted jobs matching ``where`` wait (not dispatched, not ended), as a scalar subquery."""
    return (
        select(func.count())
        .select_from(JobRow)
        .where(JobRow.dispatched == false(), UNFINISHED, *where)
        .scalar_subquery()
    )


def tenant_jobs_of(row: Any) -> TenantJobs:
    """:class:`TenantJobs` from a row that starts with :data:`TENANT_JOBS`'s columns."""
    return TenantJobs(int(row[0]), Held.of(row[1:5]))


# The hot reads of admission and dispatch, built once (a statement built per call costs more than its query). Each
# part is one range of ix_jobs_tenant_dispatched_status (0010): a tenant's waiting jobs are counted from the index
# alone, and only its dispatched ones are read for their sums, so a long queue costs admission next to nothing.
_TENANT = JobRow.tenant == bindparam("tenant")
HELD_BY = select(*HELD_SUMS).where(_TENANT, *DISPATCHED_UNFINISHED, JobRow.id != bindparam("exclude"))
_TENANT_HELD = select(*HELD_SUMS).where(_TENANT, *DISPATCHED_UNFINISHED).subquery()
TENANT_JOBS = select(_waiting(_TENANT), *_TENANT_HELD.c)

# Whether a job still waits (1 or 0) and what its tenant's dispatched jobs hold.
QUEUED_AND_HELD = select(_waiting(JobRow.id == bindparam("job_id")), *_TENANT_HELD.c)


class QueuedJob(NamedTuple):
    """What dispatch reads of a queued job before it tries it (the full record is read under the lock)."""

    id: str
    tenant: str
    cpus: float
    gpus: int
    memory_bytes: int
    message: str
