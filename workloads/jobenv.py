"""The job's environment as set by the control plane, with defaults for standalone runs."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, Field

from testbed import jobs

DEFAULT_TENANT = "local"


class JobEnv(BaseModel):
    """Who runs the job, where it logs and how much it may use."""

    tracking_uri: str
    experiment: str | None = None
    tenant: str = DEFAULT_TENANT
    job_id: str = "standalone"
    region: str = "local"
    storage_path: str
    cpus: float = Field(default=1.0, gt=0)
    gpus: int | None = Field(default=None, ge=0, description="None when not set: use the cluster's GPUs if any")
    run_tags: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "JobEnv":
        """Read the TESTBED_* / MLFLOW_* variables; standalone runs get local defaults."""
        env = os.environ if environ is None else environ
        try:
            tags = json.loads(env.get(jobs.ENV_RUN_TAGS) or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"{jobs.ENV_RUN_TAGS} is not a JSON object: {exc}") from None
        if not isinstance(tags, dict):
            raise ValueError(f"{jobs.ENV_RUN_TAGS} is not a JSON object")
        cpus = env.get(jobs.ENV_CPUS)
        return cls(
            tracking_uri=env.get(jobs.ENV_MLFLOW_TRACKING_URI) or f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}",
            experiment=env.get(jobs.ENV_MLFLOW_EXPERIMENT_NAME) or None,
            tenant=env.get(jobs.ENV_TENANT) or DEFAULT_TENANT,
            job_id=env.get(jobs.ENV_JOB_ID) or f"standalone-{uuid.uuid4().hex[:8]}",
            region=env.get(jobs.ENV_REGION) or "local",
            storage_path=env.get(jobs.ENV_STORAGE_PATH) or str(Path.home() / "ray_results"),
            cpus=float(cpus) if cpus else float(max(1, min(os.cpu_count() or 1, 2))),
            gpus=int(float(env[jobs.ENV_GPUS])) if env.get(jobs.ENV_GPUS) else None,
            run_tags={str(k): str(v) for k, v in tags.items()},
        )

    def experiment_for(self, template: str) -> str:
        """The MLflow experiment: the control plane's, else ``<tenant>/<template>``."""
        return self.experiment or jobs.experiment_name(self.tenant, template)

    def tags(self, kind: str) -> dict[str, str]:
        """Tags every MLflow run of this job carries."""
        return {
            **self.run_tags,
            jobs.TAG_TENANT: self.tenant,
            jobs.TAG_JOB_ID: self.job_id,
            jobs.TAG_REGION: self.region,
            jobs.TAG_KIND: kind,
        }
