"""A job record as admission writes it, for tests that put rows in a store directly."""

from __future__ import annotations

from typing import Any

from operators.control_plane.db.models import JobRow


def job_row(job_id: str, tenant: str, **fields: Any) -> JobRow:
    """A queued (PENDING, not dispatched) CPU job of ``tenant`` in gyeongnam; ``fields`` override any column."""
    columns: dict[str, Any] = {
        "id": job_id,
        "tenant": tenant,
        "region": "gyeongnam",
        "name": "t",
        "experiment": f"{tenant}/t",
        "status": "PENDING",
        "entrypoint": "true",
        "template": None,
        "spec": {},
        "cpus": 1.0,
        "gpus": 0,
        "gpu_model": None,
        "memory_bytes": 2**30,
        "submitted_at": 1.0,
        "dispatched": False,
        "message": "",
    }
    return JobRow(**{**columns, **fields})
