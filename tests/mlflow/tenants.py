"""A tenant's MLflow data for the isolation tests: seeding it as the tenant, and a snapshot of it.

Names carry a random ``marker``; contents (params, tags, descriptions, artifact content, span
inputs, rationales, the prompt template) carry a random ``secret`` that no request of another
identity ever sends, so a response that holds it leaked the tenant's data (a plain substring search). The
snapshot is what the owner sees; another identity's failed writes must leave it unchanged.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow import MlflowClient

from operators.mlflow_access import MlflowCredentials

_IDENTITY_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_WORKSPACE",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
)


@contextlib.contextmanager
def identity(
    credentials: MlflowCredentials | None, workspace: str | None = None, url: str | None = None
) -> Iterator[None]:
    """Act as ``credentials`` (the job env a job would get) for in-process MLflow client calls.

    ``workspace`` overrides the credential's own (e.g. the operator picking a tenant, or a tenant
    pointing its client at another tenant's workspace).
    """
    saved = {k: os.environ.get(k) for k in _IDENTITY_ENV}
    for k in _IDENTITY_ENV:
        os.environ.pop(k, None)
    if credentials is not None:
        os.environ.update(credentials.job_env())
    if workspace is not None:
        os.environ["MLFLOW_WORKSPACE"] = workspace
    if url is not None:  # for the fluent API (mlflow.*), which reads the server from the environment
        os.environ["MLFLOW_TRACKING_URI"] = url
    try:
        yield
    finally:
        mlflow.tracking.fluent._active_experiment_id = None  # set_experiment's state is per identity
        mlflow.set_tracking_uri(None)  # a URI pinned inside (seed) must not outlive its server: the env decides
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class TenantData:
    tenant: str
    marker: str  # in names
    secret: str = field(repr=False)  # in contents only
    experiment_id: str
    experiment_name: str
    run_id: str
    artifact_uri: str
    logged_model_id: str
    model_name: str
    model_version: str
    trace_id: str
    assessment_id: str
    prompt_name: str
    dataset_id: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def proxy_artifact_path(self) -> str:
        """The run's artifact as the artifact proxy names it (``workspaces/<ws>/<exp>/<run>/artifacts/...``)."""
        return self.artifact_uri.removeprefix("mlflow-artifacts:/").lstrip("/") + "/notes/marker.txt"

    def leaked_markers(self) -> list[str]:
        """Strings only this tenant's data holds: the content secret and the unguessable ids (a sweep
        ignores those a request sent itself, since error messages may echo them). Names are not
        markers -- another tenant may own a same-named copy in its own workspace -- but every named
        object carries the secret in a tag, description or content, so a listing that shows it leaks it."""
        return [self.secret, self.run_id, self.trace_id, self.logged_model_id, self.dataset_id, self.assessment_id]


def seed(url: str, credentials: MlflowCredentials) -> TenantData:
    """Log a training-like run, a registered model with a ``champion`` alias, a trace with an
    assessment, a prompt and an evaluation dataset, as the tenant itself."""
    tenant = credentials.username
    marker = f"mk{uuid.uuid4().hex[:12]}"
    secret = f"sc{uuid.uuid4().hex[:12]}"
    with identity(credentials):
        mlflow.set_tracking_uri(url)  # the fluent calls below (prompts, traces, datasets); identity() unpins it
        client = MlflowClient(url)
        name = f"{tenant}/train-{marker}"
        experiment_id = client.create_experiment(name, tags={"marker": secret})
        run = client.create_run(experiment_id, tags={"testbed.tenant": tenant, "marker": secret})
        run_id = run.info.run_id
        client.log_param(run_id, "marker_param", secret)
        for step in range(3):
            client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        client.log_text(run_id, secret, "notes/marker.txt")
        client.set_terminated(run_id)
        logged = client.create_logged_model(
            experiment_id, name="model", source_run_id=run_id, params={"marker": secret}, tags={"marker": secret}
        )
        model_name = f"{tenant}.template-{marker}"
        client.create_registered_model(model_name, tags={"marker": secret}, description=secret)
        version = client.create_model_version(
            model_name,
            source=f"models:/{logged.model_id}",
            run_id=run_id,
            model_id=logged.model_id,
            tags={"marker": secret},
        )
        client.set_registered_model_alias(model_name, "champion", version.version)
        # Before any active experiment: registering a prompt then links it from a background thread.
        prompt = mlflow.genai.register_prompt(
            name=f"{tenant}-prompt-{marker}", template="hi {{x}} " + secret, tags={"marker": secret}
        )
        mlflow.set_experiment(experiment_id=experiment_id)
        with mlflow.start_span(name=f"span-{marker}") as span:
            span.set_inputs({"q": secret})
            mlflow.update_current_trace(tags={"marker": secret})
        trace_id = span.trace_id
        mlflow.flush_trace_async_logging()
        assessment = mlflow.log_feedback(trace_id=trace_id, name="quality", value=True, rationale=secret)
        from mlflow.genai.datasets import create_dataset

        dataset = create_dataset(name=f"ds-{marker}", experiment_id=experiment_id, tags={"marker": secret})
        return TenantData(
            tenant=tenant,
            marker=marker,
            secret=secret,
            experiment_id=experiment_id,
            experiment_name=name,
            run_id=run_id,
            artifact_uri=run.info.artifact_uri,
            logged_model_id=logged.model_id,
            model_name=model_name,
            model_version=str(version.version),
            trace_id=trace_id,
            assessment_id=assessment.assessment_id,
            prompt_name=prompt.name,
            dataset_id=dataset.dataset_id,
        )


def snapshot(url: str, credentials: MlflowCredentials, data: TenantData) -> dict[str, Any]:
    """Everything about ``data`` its owner can see, in comparable form."""
    with identity(credentials):
        mlflow.set_tracking_uri(url)  # the fluent calls below (prompts, traces, datasets); identity() unpins it
        client = MlflowClient(url)
        experiment = client.get_experiment(data.experiment_id)
        run = client.get_run(data.run_id)
        model = client.get_registered_model(data.model_name)
        version = client.get_model_version(data.model_name, data.model_version)
        logged = client.get_logged_model(data.logged_model_id)
        trace = client.get_trace(data.trace_id)
        prompt = mlflow.genai.load_prompt(f"prompts:/{data.prompt_name}/1", cache_ttl_seconds=0)
        local = client.download_artifacts(data.run_id, "notes/marker.txt")
        with open(local) as f:
            artifact = f.read()
        return {
            "experiment": (experiment.name, experiment.lifecycle_stage, dict(experiment.tags)),
            "run": (
                run.info.status,
                run.info.lifecycle_stage,
                run.info.run_name,
                run.data.params,
                run.data.metrics,
                {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
            ),
            "history": [(m.step, m.value) for m in client.get_metric_history(data.run_id, "loss")],
            "artifacts": sorted(f.path for f in client.list_artifacts(data.run_id, "notes")),
            "artifact": artifact,
            "model": (model.name, model.description, dict(model.tags), dict(model.aliases)),
            "version": (version.current_stage, version.description, dict(version.tags), version.status),
            "versions": sorted(v.version for v in client.search_model_versions(f"name='{data.model_name}'")),
            "logged_model": (logged.name, logged.status, dict(logged.tags), dict(logged.params)),
            "trace": (
                trace.info.state,
                {k: v for k, v in trace.info.tags.items() if not k.startswith("mlflow.")},
                sorted((a.name, str(a.value), a.rationale) for a in trace.info.assessments),
            ),
            "prompt": (prompt.name, prompt.template),
        }
