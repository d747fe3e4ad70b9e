"""The job spec a tenant submits, the job object the control plane returns, and job env names."""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from testbed import limits as L
from testbed.spec_schema import (
    ENV_NAME,
    JOB_NAME,
    ApiMemory,
    job_spec_schema,
)
from testbed.storage import PACKAGE_REF
from testbed.templates import whole_number


class JobStatus(str, enum.Enum):
    """Job states, in Ray's words."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED})

# Environment every job gets; MLflow reads the first two itself.
ENV_MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_MLFLOW_EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"
# Every job's MLflow client gives up on a tracking server that is gone within a bounded time (MLflow's own variables,
# mlflow/environment_variables.py): a request waits at most 10 s, is retried 3 times with 1-2-4 s back-off, so a
# call fails after about a minute with MLflow's own error instead of hanging for minutes while the job is billed.
MLFLOW_CLIENT_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
# What of a job's MLflow login is secret: handed over outside the runtime env (see LaunchRequest.secret_env).
MLFLOW_SECRET_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
ENV_TENANT = "TESTBED_TENANT"
ENV_JOB_ID = "TESTBED_JOB_ID"
ENV_REGION = "TESTBED_REGION"
ENV_STORAGE_PATH = "TESTBED_STORAGE_PATH"  # where checkpoints and job outputs go: <root>/<tenant>/jobs/<job id>
ENV_DATA_PATH = "TESTBED_DATA_PATH"  # the tenant's uploaded data: <root>/<tenant>/data
ENV_CPUS = "TESTBED_CPUS"  # the job's CPU budget (Ray Train sizes its workers within it)
ENV_GPUS = "TESTBED_GPUS"
ENV_MEMORY_BYTES = "TESTBED_MEMORY_BYTES"
ENV_RUN_TAGS = "TESTBED_RUN_TAGS"  # JSON object: tags every MLflow run of the job carries
RESERVED_ENV_PREFIXES = ("TESTBED_", "MLFLOW_", "RAY_")

TAG_TENANT = "testbed.tenant"
TAG_JOB_ID = "testbed.job_id"
TAG_REGION = "testbed.region"
TAG_KIND = "testbed.kind"

EnvName = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_ENV_NAME_CHARS)]
EnvValue = Annotated[str, StringConstraints(max_length=L.MAX_ENV_VALUE_CHARS)]
ParamName = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_PARAM_NAME_CHARS)]
ParamValue = (
    Annotated[str, StringConstraints(max_length=L.MAX_PARAM_VALUE_CHARS)]
    | int
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
)


class JobSpec(BaseModel):
    """What a tenant asks to run. Exactly one of ``entrypoint`` and ``template``.

    Strict: numbers are JSON numbers, text is JSON text; limits are in :mod:`testbed.limits`.
    """

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=job_spec_schema)

    name: str | None = Field(
        default=None, max_length=63, description="experiment name within the tenant; default: template or 'default'"
    )
    entrypoint: str | None = Field(
        default=None, max_length=L.MAX_ENTRYPOINT_CHARS, description="shell command run by the job driver"
    )
    template: str | None = Field(
        default=None, max_length=L.MAX_TEMPLATE_CHARS, description="a template from `testbed templates list`"
    )
    params: dict[ParamName, ParamValue] = Field(
        default_factory=dict, max_length=L.MAX_PARAMS, description="template parameters"
    )
    code_package: str | None = Field(
        default=None,
        pattern=PACKAGE_REF,
        description="'sha256:<hex>' of a code package uploaded to the tenant's storage (PUT /v1/packages/{ref}); "
        "the job runs in it (Ray's working_dir)",
    )
    cpus: float = Field(default=1.0, ge=L.MIN_CPUS, le=L.MAX_CPUS, allow_inf_nan=False)
    gpus: Annotated[int, BeforeValidator(whole_number)] = Field(default=0, ge=0, le=L.MAX_GPUS)
    memory: ApiMemory = 2 * 2**30
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=L.MAX_ENV_VARS)
    max_runtime_seconds: Annotated[int | None, BeforeValidator(whole_number)] = Field(
        default=None,
        ge=1,
        le=L.MAX_RUNTIME_SECONDS,
        description="stop the job after it ran this long (default: the template's, or 1 h for a command; at most the "
        "tenant's max_runtime_seconds); its hold is this x its resources x the price",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_host_paths(cls, data: Any) -> Any:
        if isinstance(data, dict) and "working_dir" in data:
            raise ValueError(
                "working_dir: no request names a folder on the control plane; upload your folder "
                "(`testbed submit --working-dir DIR`, `client.submit(working_dir=DIR)`) and name the "
                "package in code_package"
            )
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not JOB_NAME.match(value):
            raise ValueError(
                f"name {value!r} must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("entrypoint must not be empty")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not ENV_NAME.match(key):
                raise ValueError(f"env name {key!r} is not a valid variable name")
            if key.startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(
                    f"env name {key!r} is reserved for the testbed (prefixes {', '.join(RESERVED_ENV_PREFIXES)})"
                )
        return env

    @model_validator(mode="after")
    def _one_of(self) -> "JobSpec":
        if (self.entrypoint is None) == (self.template is None):
            raise ValueError("give exactly one of 'entrypoint' (a command) and 'template' (a template name)")
        if self.params and self.template is None:
            raise ValueError("'params' only apply to a template job")
        return self

    @property
    def experiment_suffix(self) -> str:
        return self.name or self.template or "default"


class Job(BaseModel):
    """A job as the control plane reports it."""

    id: str
    tenant: str
    region: str
    name: str
    status: JobStatus
    entrypoint: str
    template: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    cpus: float
    gpus: int
    gpu_model: str | None = None
    memory: str
    experiment: str = Field(description="MLflow experiment, '<tenant>/<name>'")
    message: str = ""
    submitted_at: str
    started_at: str | None = None
    ended_at: str | None = None
    backend_ref: str | None = None
    idle_since: str | None = Field(
        default=None,
        description="since when every GPU of the job has stayed under the "
        "idle threshold (RFC 3339 UTC); null while it is not flagged idle",
    )
    idle_gpu_hours: float = Field(default=0.0, description="GPU-hours the job held idle so far")
    max_runtime_seconds: int | None = Field(default=None, description="the job is stopped after running this long")
    hold_krw: int = Field(default=0, description="won held at admission: its maximum cost")
    charged_krw: int = Field(default=0, description="won charged so far")


class JobList(BaseModel):
    """One page of jobs, newest first; ``next_cursor`` fetches the next page (None: this is the last)."""

    jobs: list[Job]
    next_cursor: str | None = Field(default=None, description="pass as ?cursor= for the next page")


class JobLogs(BaseModel):
    id: str
    status: JobStatus
    logs: str
    final: bool = Field(description="true once the job ended and its logs were stored by the control plane")


def experiment_name(tenant: str, suffix: str) -> str:
    """MLflow experiment of a tenant's job: ``<tenant>/<name>``."""
    return f"{tenant}/{suffix}"
