"""Settings of one control-plane process: a JSON file that local mode and Pulumi both write from this model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from testbed.quantities import MemoryBytes
from testbed.errors import format_validation_errors
from testbed.limits import DEFAULT_MAX_QUEUED_JOBS, MAX_DATA_FILE_BYTES, MAX_PACKAGE_BYTES
from testbed.versions import IMAGES

# Cluster mode (backend "kuberay"): how long a finished job's Ray cluster stays: not at all. Kueue releases the job's
# quota when the RayJob completes (Kueue v0.19.2 pkg/controller/jobs/rayjob/rayjob_controller.go ``Finished``),
# so a cluster kept longer would run outside the quota and hold the namespace's ResourceQuota against the next
# job. The logs stay: KubeRay keeps the submitter Job (v1.7.0 rayjob_controller.go handleShutdownAfterJobFinishes).
DEFAULT_RAYJOB_TTL_SECONDS = 0


class SettingsError(ValueError):
    pass


def token_sha256(token: str) -> str:
    """How a bearer token is stored and configured: its SHA-256, hex (tokens carry 256 random bits)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ControlPlaneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stack_file: Path = Field(description="the region's Pulumi.<region>.yaml (or its rendering in a ConfigMap)")
    database_url: str = Field(description="SQLAlchemy URL: sqlite:///... locally, postgresql://... in a cluster")
    backend: Literal["ray", "noop", "kuberay"] = "ray"
    ray_address: str | None = Field(default=None, description="Ray dashboard (Jobs API) URL")
    placement_file: Path | None = Field(
        default=None,
        description="kuberay: tenant -> namespace, LocalQueue, ClusterQueue, GPU pool (Pulumi's placement.yaml)",
    )
    ray_image: str = Field(default=IMAGES["ray"].ref, description="kuberay: image of the jobs' Ray pods")
    rayjob_ttl_seconds: int = Field(
        default=DEFAULT_RAYJOB_TTL_SECONDS, ge=0, description="kuberay: keep a finished job's Ray cluster this long"
    )
    mlflow_tracking_uri: str = Field(description="handed to every job")
    mlflow_admin_password_file: Path | None = Field(
        default=None,
        description="file (0600 locally, a mounted Secret in a cluster) holding the MLflow admin password: the control "
        "plane provisions one MLflow user and workspace per tenant and hands each job its own tenant's "
        "login; unset: MLflow has no access control and jobs get no MLflow login",
    )
    mlflow_public_url: str | None = Field(
        default=None, description="MLflow's URL as tenants reach it (UI and SDK); default: mlflow_tracking_uri"
    )
    storage_path: str = Field(
        description="root folder or fsspec URL of the tenants' storage: <root>/<tenant>/"
        "{packages,data,jobs} (testbed/storage.py); s3://<bucket>/tenants in a cluster"
    )
    max_package_bytes: int = Field(default=MAX_PACKAGE_BYTES, ge=1, description="a code package's zip and its files")
    max_data_file_bytes: int = Field(default=MAX_DATA_FILE_BYTES, ge=1, description="one uploaded data file")
    job_logins_dir: Path | None = Field(
        default=None,
        description="ray backend: where each job's MLflow login is written (0700 folder per job, a 0600 "
        "~/.mlflow/credentials the job's MLflow client reads); default: a private temporary "
        "folder",
    )
    upload_idle_seconds: float = Field(
        default=600,
        gt=0,
        description="an upload not written to for this long is abandoned: removed at start and by the periodic sweep",
    )
    capacity_cpus: float | None = Field(
        default=None, description="largest job the backend can ever run (its largest node)"
    )
    capacity_gpus: float | None = None
    capacity_memory: MemoryBytes | None = Field(default=None, description="bytes: the largest node's memory")
    max_queued_jobs_per_tenant: int = Field(
        default=DEFAULT_MAX_QUEUED_JOBS, ge=1, description="jobs a tenant may have admitted but not yet dispatched"
    )
    credentials_dir: Path | None = Field(
        default=None, description="local mode: issue missing tenant/operator tokens at start and write them here (0600)"
    )
    operator_token_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="cluster mode: SHA-256 of the operator token the stack generated; installed at start (the clear "
        "token is the stack's secret output `operator_token`, never in settings)",
    )
    monitoring_token_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="cluster mode: SHA-256 of the token Prometheus scrapes /metrics with (the stack generates it and "
        "keeps the clear token in a Secret of the platform namespace for the ServiceMonitor)",
    )
    program_office_token_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="cluster mode: SHA-256 of the program office's read-only token (the clear token is the stack's "
        "secret output `program_office_token`); locally it is written to credentials/program-office.token",
    )
    sync_interval_seconds: float = Field(default=0.25, gt=0)
    prometheus_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="Prometheus holding the DCGM utilisation joined to jobs (operators/metering/rules.yaml, group "
        "testbed.gpu.idle); unset: idle GPUs are not watched",
    )
    idle_threshold_ratio: float = Field(
        default=0.05, gt=0, le=1, description="a GPU under this utilisation (0-1) counts as idle"
    )
    idle_flag_minutes: float = Field(
        default=30.0, gt=0, description="a job whose every GPU stays under the threshold this long is flagged idle"
    )
    idle_check_seconds: float = Field(default=30.0, gt=0, description="how often Prometheus is asked")
    charge_interval_seconds: float = Field(
        default=30.0, gt=0, le=60, description="how often the reconciler charges running jobs (at least every minute)"
    )
    lease_ttl_seconds: float = Field(
        default=5.0, gt=0, description="replicas: the reconciler lease lapses this long after its holder's last renewal"
    )
    lease_renew_seconds: float = Field(
        default=1.0, gt=0, description="replicas: how often the lease is renewed or tried"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @classmethod
    def from_file(cls, path: str | Path) -> "ControlPlaneSettings":
        path = Path(path)
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            raise SettingsError(f"{path}: no such settings file") from None
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{path}: not valid JSON: {exc}") from None
        except ValidationError as exc:
            raise SettingsError(f"{path}: {format_validation_errors(exc.errors())}") from None

    def to_json(self) -> str:
        """The settings file's text (what ``from_file`` reads)."""
        return self.model_dump_json(indent=2, exclude_defaults=False)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())
