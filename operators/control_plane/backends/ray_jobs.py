"""Run jobs on any Ray cluster through its Jobs API (the dashboard address)."""

from __future__ import annotations

import threading

from operators.control_plane.backends.base import (
    Backend,
    BackendError,
    BackendJobInfo,
    Capacity,
    JobNotFound,
    LaunchRequest,
)
from testbed.jobs import JobStatus


class RayJobsBackend(Backend):
    """Submits with the control plane's job id as Ray's submission id, so a retry is idempotent."""

    name = "ray"

    def __init__(self, address: str, capacity: Capacity | None = None):
        self.address = address
        self._capacity = capacity or Capacity()
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self):
        """Ray's JobSubmissionClient, created on first use (it checks the cluster when built)."""
        with self._lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient

                try:
                    self._client = JobSubmissionClient(self.address)
                except Exception as exc:  # connection refused, version mismatch, ...
                    raise BackendError(f"Ray Jobs API at {self.address} is not reachable: {exc}") from None
            return self._client

    def submit(self, request: LaunchRequest) -> str:
        runtime_env: dict = {"env_vars": request.env}
        if request.working_dir:
            runtime_env["working_dir"] = request.working_dir
        try:
            return self.client.submit_job(
                entrypoint=request.entrypoint,
                submission_id=request.job_id,
                runtime_env=runtime_env,
                metadata={"testbed.tenant": request.tenant, **request.metadata},
                entrypoint_num_cpus=request.driver_cpus,
                entrypoint_num_gpus=request.driver_gpus,
                entrypoint_memory=request.driver_memory,
            )
        except BackendError:
            raise
        except Exception as exc:
            if "already exists" in str(exc):  # submitted before a crash: adopt it
                return request.job_id
            raise BackendError(f"Ray refused job {request.job_id}: {_first_line(exc)}") from None

    def info(self, ref: str) -> BackendJobInfo:
        try:
            info = self.client.get_job_info(ref)
        except BackendError:
            raise
        except Exception as exc:
            if "does not exist" in str(exc) or "404" in str(exc) or "not found" in str(exc).lower():
                raise JobNotFound(f"Ray does not know job {ref}") from None
            raise BackendError(f"Ray Jobs API error for {ref}: {_first_line(exc)}") from None
        return BackendJobInfo(
            status=JobStatus(str(info.status.value if hasattr(info.status, "value") else info.status)),
            message=info.message or "",
            start_time=info.start_time / 1000 if info.start_time else None,
            end_time=info.end_time / 1000 if info.end_time else None,
        )

    def logs(self, ref: str) -> str:
        try:
            return self.client.get_job_logs(ref)
        except BackendError:
            raise
        except Exception as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                raise JobNotFound(f"Ray does not know job {ref}") from None
            raise BackendError(f"cannot read logs of {ref}: {_first_line(exc)}") from None

    def stop(self, ref: str) -> None:
        try:
            self.client.stop_job(ref)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"cannot stop {ref}: {_first_line(exc)}") from None

    def capacity(self) -> Capacity:
        return self._capacity

    def healthy(self) -> bool:
        try:
            self.client.get_version()  # cheap, unlike listing every job
            return True
        except Exception:
            return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
