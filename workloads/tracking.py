"""MLflow helpers shared by the entrypoints: experiment set-up, tagged runs, model names."""

from __future__ import annotations

from pathlib import Path

import mlflow

from workloads.jobenv import JobEnv


def use_experiment(env: JobEnv, template: str) -> str:
    """Point MLflow at the job's tracking server and experiment; returns the experiment id."""
    if env.tracking_uri.startswith("sqlite:///"):
        Path(env.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(env.tracking_uri)
    experiment = mlflow.set_experiment(env.experiment_for(template))
    return experiment.experiment_id


def registered_model_name(tenant: str, template: str) -> str:
    """Tenant-scoped registered model name, ``<tenant>.<template>``."""
    return f"{tenant}.{template}"


def enable_fast_system_metrics(interval_s: float = 1.0) -> None:
    """Sample system metrics every ``interval_s`` so short runs still record some."""
    mlflow.set_system_metrics_sampling_interval(interval_s)
    mlflow.set_system_metrics_samples_before_logging(1)
