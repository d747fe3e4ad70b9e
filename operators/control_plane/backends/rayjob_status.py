"""What a RayJob object (and the Kueue Workload that admits it) says about a job: its status, its message, its
times, as a ``BackendJobInfo``."""

from __future__ import annotations

import datetime as dt

from operators.control_plane.backends.base import BackendJobInfo
from operators.control_plane.backends.kueue_workload import admitted, workload_message
from testbed import jobs as J
from testbed.jobs import JobStatus
from testbed.kube import STOP_ANNOTATION

_TERMINAL_JOB_STATUSES = {s.value for s in J.TERMINAL_STATUSES}
_FAILED_DEPLOYMENTS = {"Failed", "ValidationFailed"}
_WAITING_MESSAGES = {
    "": "created; waiting for KubeRay",
    "New": "created; waiting for KubeRay",
    "Suspended": "waiting for Kueue to admit it",
    "Suspending": "waiting for Kueue to admit it",
    "Initializing": "admitted; starting the Ray cluster",
    "Waiting": "waiting for the Ray cluster",
    "Retrying": "retrying on a new Ray cluster",
}


def parse_time(value: str | None) -> float | None:
    """RFC 3339 (``2025-03-01T09:00:00Z``) to epoch seconds."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def rayjob_status(obj: dict) -> JobStatus:
    status = obj.get("status") or {}
    job, deployment = status.get("jobStatus") or "", status.get("jobDeploymentStatus") or ""
    if (obj.get("metadata") or {}).get("annotations", {}).get(STOP_ANNOTATION) and job not in _TERMINAL_JOB_STATUSES:
        return JobStatus.STOPPED
    if deployment == "Retrying":
        return JobStatus.PENDING  # a failed attempt that KubeRay retries is not the end
    if job in _TERMINAL_JOB_STATUSES:
        return JobStatus(job)
    if deployment in _FAILED_DEPLOYMENTS:
        return JobStatus.FAILED
    return JobStatus.RUNNING if job == "RUNNING" else JobStatus.PENDING


def rayjob_message(obj: dict, status: JobStatus) -> str:
    info = obj.get("status") or {}
    if status == JobStatus.STOPPED and (obj.get("metadata") or {}).get("annotations", {}).get(STOP_ANNOTATION):
        return "stopped"
    text = info.get("message") or info.get("reason") or ""
    if status == JobStatus.PENDING and not text:
        return _WAITING_MESSAGES.get(info.get("jobDeploymentStatus") or "", "")
    return text


def queue_message(obj: dict, status: JobStatus, workload: dict, cluster_queue: str) -> str:
    """Kueue's reason while the job has not ended: why it waits, or that it was admitted (and what KubeRay does)."""
    kueue = workload_message(workload, cluster_queue)
    ray = rayjob_message(obj, status).removeprefix("admitted; ") if admitted(workload) else ""
    return f"{kueue}; {ray}" if ray and ray != _WAITING_MESSAGES["Suspended"] else kueue


def job_info(obj: dict, workload: dict | None = None, cluster_queue: str = "") -> BackendJobInfo:
    """Map a RayJob object (its ``status``), and its Kueue Workload when known, to what the control plane tracks."""
    info = obj.get("status") or {}
    ray_times = info.get("rayJobInfo") or {}
    status = rayjob_status(obj)
    end = parse_time(ray_times.get("endTime") or info.get("endTime")) if status.terminal else None
    message = (
        queue_message(obj, status, workload, cluster_queue)
        if workload is not None and not status.terminal
        else rayjob_message(obj, status)
    )
    return BackendJobInfo(
        status=status,
        message=message,
        start_time=parse_time(ray_times.get("startTime") or info.get("startTime")),
        end_time=end,
    )
