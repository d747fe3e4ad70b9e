"""A job record as admission writes it, and a way to write rows through the ORM, for tests that put rows in a
store directly."""

from __future__ import annotations

from typing import Any

from operators.control_plane.db.models import JobRow
from operators.control_plane.db.store import Store


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


def add_rows(store: Store, rows: list[Any]) -> None:
    """Write new rows through the ORM (its listeners: running balances, audit rows) as one group-commit work;
    returns once they are committed."""
    store.group_write(lambda s: s.add_all(rows))
