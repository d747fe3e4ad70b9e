"""What the backend is asked to run for a job record: its budget, the driver's share and its environment (the
tenant's MLflow login kept apart, as a secret the backend hands over without logging it)."""

from __future__ import annotations

import json
from typing import Callable

from operators.control_plane.backends.base import NO_RESOURCES, CodePackage, LaunchRequest, Resources, RuntimeEnv
from operators.control_plane.db.pricing import PRICED_KEY
from operators.control_plane.db.store import JobRow
from testbed import jobs as J
from testbed.jobs import JobSpec
from testbed.settings import ControlPlaneSettings
from testbed.storage import DATA, JOBS, PACKAGES, package_file, package_sha256, tenant_path


def launch_request(
    row: JobRow, settings: ControlPlaneSettings, mlflow_env: Callable[[str], dict[str, str]] | None = None
) -> LaunchRequest:
    """What the backend is asked to run for a job record: budget, driver's share, environment.

    ``mlflow_env(tenant)``: the tenant's own MLflow login (``MLFLOW_TRACKING_USERNAME/PASSWORD``,
    ``MLFLOW_WORKSPACE``); it goes only into the backend's request, never into the job record.
    """
    fields = {k: v for k, v in row.spec.items() if k not in ("kind", PRICED_KEY)}  # the record's own keys
    if row.template is None:
        fields["entrypoint"] = row.entrypoint  # stored once, in the record's own column
    spec = JobSpec.model_validate(fields)
    package = None
    if spec.code_package is not None:  # admission found it in the tenant's storage; packages are never removed
        sha256 = package_sha256(spec.code_package)
        package = CodePackage(
            sha256=sha256, location=tenant_path(settings.storage_path, row.tenant, PACKAGES, package_file(sha256))
        )
    budget = Resources(cpus=row.cpus, gpus=row.gpus, memory=row.memory_bytes)
    request = LaunchRequest(
        job_id=row.id,
        tenant=row.tenant,
        region=row.region,
        entrypoint=row.entrypoint,
        budget=budget,
        # A template drives Ray Train workers that reserve the job's resources themselves.
        driver=budget if row.template is None else NO_RESOURCES,
    )
    env = {
        **spec.env,
        J.ENV_MLFLOW_TRACKING_URI: settings.mlflow_tracking_uri,
        J.ENV_MLFLOW_EXPERIMENT_NAME: row.experiment,
        J.ENV_TENANT: row.tenant,
        J.ENV_JOB_ID: row.id,
        J.ENV_REGION: row.region,
        J.ENV_STORAGE_PATH: tenant_path(settings.storage_path, row.tenant, JOBS, row.id),
        J.ENV_DATA_PATH: tenant_path(settings.storage_path, row.tenant, DATA),
        **budget.env(),
        J.ENV_RUN_TAGS: json.dumps(request.metadata),
        **J.MLFLOW_CLIENT_BOUNDS,
    }
    login = mlflow_env(row.tenant) if mlflow_env is not None else {}
    env.update({k: v for k, v in login.items() if k not in J.MLFLOW_SECRET_VARS})  # last: a spec cannot override it
    secrets = {k: v for k, v in login.items() if k in J.MLFLOW_SECRET_VARS}
    return request.model_copy(
        update={"runtime_env": RuntimeEnv(env_vars=env, code_package=package), "secret_env": secrets}
    )
