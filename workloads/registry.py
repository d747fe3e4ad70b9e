"""Log a trained model to MLflow with signature and input example, register it under the tenant,
and read back what a validation job needs (the model and how it was trained)."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature

from workloads.loop import predict

TASK_ARTIFACT = "testbed/task.json"


def log_and_register(model: torch.nn.Module, example: np.ndarray, name: str, task_info: dict[str, Any], tags: dict[str, str]) -> str:
    """Log ``model`` to the active run, register it as ``name``; returns the new version."""
    model.eval()
    output = predict(model, example, torch.device("cpu"))
    mlflow.log_dict(task_info, TASK_ARTIFACT)
    info = mlflow.pytorch.log_model(
        model,
        name="model",
        signature=infer_signature(example, output),
        input_example=example,
        registered_model_name=name,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return version


def task_info(client: mlflow.MlflowClient, run_id: str) -> dict[str, Any]:
    """The template, params and feature layout the run's model was trained with."""
    return mlflow.artifacts.load_dict(client.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + TASK_ARTIFACT)
