"""The backend interface: where a persisted job is actually run."""

from __future__ import annotations

import abc

from pydantic import BaseModel

from testbed.jobs import JobStatus


class BackendError(RuntimeError):
    """The backend could not be reached or refused the call; the message says why."""


class JobNotFound(BackendError):
    """The backend does not know the job (e.g. the Ray cluster was restarted)."""


class LaunchRequest(BaseModel):
    """Everything a backend needs to start a job."""

    job_id: str
    tenant: str
    entrypoint: str
    env: dict[str, str]
    working_dir: str | None = None
    driver_cpus: float
    driver_gpus: float
    driver_memory: int | None = None
    metadata: dict[str, str] = {}


class BackendJobInfo(BaseModel):
    """What the backend says of a job; times are epoch seconds."""

    status: JobStatus
    message: str = ""
    start_time: float | None = None
    end_time: float | None = None


class Capacity(BaseModel):
    """The most a single job can ever get on this backend (None: unknown, do not check)."""

    cpus: float | None = None
    gpus: float | None = None


class Backend(abc.ABC):
    """Runs jobs. Implementations: Ray Jobs (any Ray cluster), no-op (benchmarks)."""

    name: str = "backend"

    @abc.abstractmethod
    def submit(self, request: LaunchRequest) -> str:
        """Start the job; return the backend's reference for it. Idempotent per job id."""

    @abc.abstractmethod
    def info(self, ref: str) -> BackendJobInfo:
        """Current state; raises JobNotFound if the backend forgot the job."""

    @abc.abstractmethod
    def logs(self, ref: str) -> str:
        """The job's output so far."""

    @abc.abstractmethod
    def stop(self, ref: str) -> None:
        """Ask the job to stop."""

    def capacity(self) -> Capacity:
        return Capacity()

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        """Release connections."""
