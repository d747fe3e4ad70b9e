"""Room in a tenant's quota: whether what its dispatched, unfinished jobs hold leaves room for one more job.

Admission asks (a job it finds no room for is stored with the reason and left to the sync, which hands the
queue on as jobs end) and dispatch asks again, in the tenant's section, before the backend is called.
"""

from __future__ import annotations

from typing import Protocol

from operators.control_plane.db.held import Held
from testbed.config import Tenant

# Every reason a job waits for room starts so (and no other message of a queued job does).
NO_ROOM_PREFIX = "queued: tenant"


class Sized(Protocol):
    """What a job asks for (a job record, a queued job's few columns)."""

    cpus: float
    gpus: int
    memory_bytes: int


def no_room(tenant: Tenant, held: Held, job: Sized) -> str | None:
    """None if what the tenant's running jobs hold (jobs, CPUs, GPUs, memory) leaves room for the job, else why not."""
    quota = tenant.quota
    if held.jobs >= quota.max_running_jobs:
        return f"{NO_ROOM_PREFIX} runs {held.jobs} of {quota.max_running_jobs} allowed jobs"
    if held.cpus + job.cpus > quota.cpus:
        return f"{NO_ROOM_PREFIX}'s running jobs hold {held.cpus:g} of {quota.cpus} CPUs"
    if held.gpus + job.gpus > quota.gpus:
        return f"{NO_ROOM_PREFIX}'s running jobs hold {held.gpus} of {quota.gpus} GPUs"
    if held.memory_bytes + job.memory_bytes > quota.memory:
        return f"{NO_ROOM_PREFIX}'s running jobs hold its memory quota"
    return None


def waits_for_room(message: str) -> bool:
    """A queued job's message says it waits for room in its tenant's quota."""
    return message.startswith(NO_ROOM_PREFIX)
