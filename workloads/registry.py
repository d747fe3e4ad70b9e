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


def log_and_register(
    model: torch.nn.Module, example: np.ndarray, name: str, task_info: dict[str, Any], tags: dict[str, str]
) -> str:
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


def log_classical(
    template: str, task: Any, baseline: Any, train: Any, example: np.ndarray, name: str | None, tags: dict[str, str]
) -> str:
    """Log a fitted classical baseline to the active run as the MLflow model ``classical`` (answering like the
    neural model: see ``workloads.baselines.ClassicalModel``); register it as ``name`` when given. Returns the
    new version, or '' when not registered."""
    import sklearn

    from workloads.baselines import ClassicalModel

    classes = max(len(train.classes), int(train.y.max()) + 1) if task.problem == "classification" else 1
    wrapper = ClassicalModel(template, baseline.estimator, task.problem, classes)
    info = mlflow.pyfunc.log_model(
        name="classical",
        python_model=wrapper,
        signature=infer_signature(example, wrapper.scores(example)),
        registered_model_name=name,
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"mlflow=={mlflow.__version__}"],
    )
    if name is None:
        return ""
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return version


def load_scorer(name: str, version: str) -> Any:
    """A registered version as ``f(x) -> outputs`` (the neural model's layout), torch or classical."""
    client = mlflow.MlflowClient()
    flavor = client.get_model_version(name, version).tags.get("testbed.flavor", "torch")
    uri = f"models:/{name}/{version}"
    if flavor == "classical":
        model = mlflow.pyfunc.load_model(uri)
        return lambda x: np.asarray(model.predict(x))
    from mlflow import pytorch as mlflow_pytorch

    torch_model = mlflow_pytorch.load_model(uri, map_location="cpu")
    return lambda x: predict(torch_model, x, torch.device("cpu"))


def load_run_classical(run_id: str) -> Any:
    """The best classical baseline a training run logged (``runs:/<id>/classical``) as ``f(x) -> outputs``; None if none."""
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/classical")
    except Exception:  # the run predates baselines, or ran with baselines=false
        return None
    return lambda x: np.asarray(model.predict(x))


def task_info(client: mlflow.MlflowClient, run_id: str) -> dict[str, Any]:
    """The template, params and feature layout the run's model was trained with."""
    return mlflow.artifacts.load_dict(client.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + TASK_ARTIFACT)
