"""Helpers for metering tests."""

from __future__ import annotations

import itertools

from operators.control_plane.db.store import Store
from tests.job_rows import job_row

_counter = itertools.count(1)


def add_job(
    store: Store,
    tenant: str,
    status: str,
    *,
    started: float | None,
    ended: float | None = None,
    last_seen: float | None = None,
    cpus: float = 1.0,
    gpus: int = 0,
    gpu_model: str | None = None,
    memory: int = 2**30,
) -> str:
    """Add a job the way the control plane does: PENDING first, then its later state in one update
    (so the terminal hook runs exactly as in production)."""
    job_id = f"job-test-{next(_counter):08d}"
    store.add_job(
        job_row(
            job_id,
            tenant,
            cpus=cpus,
            gpus=gpus,
            gpu_model=gpu_model if gpus else None,
            memory_bytes=memory,
            submitted_at=(started or 0.0) - 1,
        )
    )
    if status != "PENDING":
        store.update_job(
            job_id,
            status=status,
            started_at=started,
            ended_at=ended,
            last_seen_at=last_seen if last_seen is not None else ended,
            dispatched=True,
        )
    return job_id
