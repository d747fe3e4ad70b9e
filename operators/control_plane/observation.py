"""What one look at the backend changes on a job record: status, messages, and when billing starts and ends."""

from __future__ import annotations

from typing import Any

from operators.control_plane.backends.base import BackendJobInfo
from operators.control_plane.db.store import JobRow
from testbed.jobs import JobStatus

# If we last looked at a job longer ago than this, we cannot tell when it started running and
# bill from the look that first saw it started.
START_OBSERVATION_SLACK_SECONDS = 2.0


def observed_changes(row: JobRow, info: BackendJobInfo, now: float) -> dict[str, Any]:
    """The record changes one observation of the backend implies (logs aside), billing start included.

    Billing starts at the first look that finds the job started: midway between that look and the
    previous one (still pending) when they are close, else at that look. A job the backend ended
    without ever starting it (start timeout, runtime env failure, stopped while pending) keeps
    ``started_at`` empty and bills nothing. The backend's own start time is its submit time: unused.
    """
    # The backend's word on a job it holds (e.g. Kueue's reason it waits), else the message the record has.
    changes: dict[str, Any] = {
        "last_seen_at": now,
        "message": info.message if info.status.terminal or info.message else row.message,
    }
    if row.started_at is None and _has_run(info):
        watched = row.last_seen_at is not None and now - row.last_seen_at <= START_OBSERVATION_SLACK_SECONDS
        changes["started_at"] = (row.last_seen_at + now) / 2 if watched else now
    if info.status.terminal:
        changes["ended_at"] = info.end_time or now
        started = changes.get("started_at", row.started_at)
        if started is not None:
            changes["started_at"] = min(started, changes["ended_at"])
    changes["status"] = info.status.value
    return changes


def backend_ref(row: JobRow) -> str:
    """The backend's reference of a dispatched job."""
    return row.backend_ref or row.id


def _has_run(info: BackendJobInfo) -> bool:
    """Whether the job's process ever started (a backend that cannot tell: only a success says so)."""
    if info.status == JobStatus.PENDING:
        return False
    if info.status == JobStatus.RUNNING:
        return True
    return info.ran if info.ran is not None else info.status == JobStatus.SUCCEEDED
