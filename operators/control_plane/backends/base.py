"""The backend interface: where a persisted job is actually run, and the launch contract."""

from __future__ import annotations

import abc
from typing import Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from testbed import jobs as J
from testbed.quantities import format_memory
from testbed.jobs import JobStatus


class BackendError(RuntimeError):
    """The backend could not be reached or refused the call; the message says why."""


class PermanentBackendError(BackendError):
    """The backend refused the job for good (too large, a bad runtime env): retrying cannot help."""


class JobNotFound(BackendError):
    """The backend does not know the job (e.g. the Ray cluster was restarted)."""


class AlreadyExists(BackendError):
    """The backend already has a job under this name (submitted before a crash)."""


class Resources(BaseModel):
    """An amount of CPUs, GPUs and memory (bytes)."""

    model_config = ConfigDict(frozen=True)

    cpus: float = Field(ge=0)
    gpus: int = Field(ge=0)
    memory: int = Field(ge=0, description="bytes")

    def fits_in(self, other: Resources) -> bool:
        return self.cpus <= other.cpus and self.gpus <= other.gpus and self.memory <= other.memory

    def plus(self, other: Resources, times: int = 1) -> Resources:
        """This amount and ``times`` x ``other``."""
        return Resources(
            cpus=self.cpus + times * other.cpus,
            gpus=self.gpus + times * other.gpus,
            memory=self.memory + times * other.memory,
        )

    def __str__(self) -> str:
        gpus = f", {self.gpus} GPUs" if self.gpus else ""
        return f"{self.cpus:g} CPUs{gpus}, {format_memory(self.memory)} memory"

    def env(self) -> dict[str, str]:
        """The job's budget as the workloads read it (``TESTBED_CPUS`` ...)."""
        return {J.ENV_CPUS: f"{self.cpus:g}", J.ENV_GPUS: str(self.gpus), J.ENV_MEMORY_BYTES: str(self.memory)}


NO_RESOURCES = Resources(cpus=0, gpus=0, memory=0)


class CodePackage(BaseModel):
    """A tenant's uploaded code package: its SHA-256 and where the control plane stored it.

    ``location`` is a path on the control plane's disk locally and ``s3://<bucket>/tenants/<tenant>/packages/
    <sha256>.zip`` in a cluster. Each backend turns it into the URI Ray unpacks as the job's working_dir: the Ray Jobs
    backend uploads it to Ray's own package store (:attr:`gcs_uri`), KubeRay pods fetch the ``s3://`` URI themselves
    with their tenant's identity.
    """

    model_config = ConfigDict(frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    location: str

    @property
    def gcs_uri(self) -> str:
        """The package's name in a Ray cluster's package store (what Ray's job client names its uploads)."""
        return f"gcs://_ray_pkg_{self.sha256}.zip"


class RuntimeEnv(BaseModel):
    """The job's environment variables and its code: a package (``code_package``) or a Ray URI (``working_dir``)."""

    env_vars: dict[str, str] = Field(default_factory=dict)
    code_package: CodePackage | None = None
    working_dir: str | None = Field(default=None, description="a Ray package URI (gcs://, s3://); set by the backend")

    def with_working_dir(self, uri: str) -> RuntimeEnv:
        return self.model_copy(update={"working_dir": uri})

    def to_ray(self) -> dict[str, object]:
        """Ray's ``runtime_env`` (the Jobs API's argument, a RayJob's ``runtimeEnvYAML``)."""
        runtime_env: dict[str, object] = {"env_vars": dict(self.env_vars)}
        if self.working_dir:
            runtime_env["working_dir"] = self.working_dir
        return runtime_env


class LaunchRequest(BaseModel):
    """Everything a backend needs to start a job.

    ``budget`` is what the job may use in all; ``driver`` is the part its driver process reserves.
    A command job reserves its whole budget in the driver; a template job's driver reserves nothing,
    because the Ray Train workers it starts reserve the budget themselves.
    """

    model_config = ConfigDict(frozen=True)

    job_id: str
    tenant: str
    region: str
    entrypoint: str
    budget: Resources
    driver: Resources = NO_RESOURCES
    runtime_env: RuntimeEnv = Field(default_factory=RuntimeEnv)
    # The job's secrets (its tenant's MLflow login): never in the runtime env, which Ray logs and shows to anyone
    # holding its token. Each backend hands them over its own way: a 0600 file the job's MLflow client reads
    # (ray), a per-job Kubernetes Secret the pods reference (kuberay).
    secret_env: dict[str, str] = Field(default_factory=dict, repr=False, exclude=True)

    @model_validator(mode="after")
    def _driver_within_budget(self) -> LaunchRequest:
        if not self.driver.fits_in(self.budget):
            raise ValueError(f"the driver's share {self.driver} exceeds the job's budget {self.budget}")
        return self

    @property
    def metadata(self) -> dict[str, str]:
        """The job's tags: Ray job metadata, RayJob ``spec.metadata`` and its MLflow runs' tags."""
        return {J.TAG_TENANT: self.tenant, J.TAG_JOB_ID: self.job_id, J.TAG_REGION: self.region}


class BackendJobInfo(BaseModel):
    """What the backend says of a job; times are epoch seconds."""

    status: JobStatus
    message: str = ""
    start_time: float | None = None
    end_time: float | None = None
    ran: bool | None = Field(default=None, description="whether the job's process ever started (None: unknown)")


class PodRequests(BaseModel):
    """What one job's pods request in all (what a cluster's queue counts), and the part beyond the job's budget."""

    total: Resources
    overhead: dict[str, Resources] = Field(default_factory=dict, description="e.g. the Ray head, the submitter pod")


BackendAnswer = Union[BackendJobInfo, BackendError]


class Capacity(BaseModel):
    """The most a single job can ever get on this backend (None: unknown, do not check)."""

    cpus: float | None = None
    gpus: float | None = None
    memory: int | None = Field(default=None, description="bytes")


class Backend(abc.ABC):
    """Runs jobs. Implementations: Ray Jobs (any Ray cluster), KubeRay RayJobs, no-op (benchmarks)."""

    name: str = "backend"
    # The backend queues dispatched jobs against the tenants' quotas itself (Kueue): the control plane hands
    # every admitted job over at once and keeps no queue of its own.
    queues_jobs: bool = False
    # Billing starts at the first look that finds a job running, so the sync looks at starting jobs every 50 ms.
    # A backend whose every look costs API calls (Kubernetes) turns this off: billing then starts at the sync
    # round (seconds apart) that first sees the job running.
    watch_starts: bool = True

    @abc.abstractmethod
    def submit(self, request: LaunchRequest) -> str:
        """Start the job; return the backend's reference for it. Idempotent per job id."""

    @abc.abstractmethod
    def info(self, ref: str) -> BackendJobInfo:
        """Current state; raises JobNotFound if the backend forgot the job."""

    def info_many(self, refs: Sequence[str]) -> dict[str, BackendAnswer]:
        """Each job's state, or the BackendError (JobNotFound ...) ``info`` raises for it; backends batch this."""
        answers: dict[str, BackendAnswer] = {}
        for ref in refs:
            try:
                answers[ref] = self.info(ref)
            except BackendError as exc:
                answers[ref] = exc
        return answers

    def pod_requests(self, budget: Resources) -> PodRequests:
        """What a job with this budget requests from the cluster in all (by default: its budget)."""
        return PodRequests(total=budget)

    @abc.abstractmethod
    def logs(self, ref: str) -> str:
        """The job's output so far; raises JobNotFound if the backend forgot the job."""

    @abc.abstractmethod
    def stop(self, ref: str) -> None:
        """Ask the job to stop; raises JobNotFound if the backend forgot the job."""

    def capacity(self) -> Capacity:
        return Capacity()

    def healthy(self) -> bool:
        return True

    def close(self) -> None:  # noqa: B027 (a no-op unless a backend holds connections)
        """Release connections."""
