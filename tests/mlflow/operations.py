"""Well-formed REST calls on one tenant's resources, one per thing a tenant does with MLflow.

The same table is played three ways (tests/mlflow/test_isolation_rest.py): by the owner, where
every call must succeed (so the table is known to be well-formed), by another tenant and by the
operator, where writes must be refused and reads must be refused or filtered. Order: reads, then
writes, then deletes, so the owner can play it top to bottom on a fresh copy of its data.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.mlflow.tenants import TenantData

R2, R3, AJAX = "/api/2.0/mlflow", "/api/3.0/mlflow", "/ajax-api/2.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts/artifacts"


@dataclass(frozen=True)
class Op:
    name: str
    method: str
    path: Callable[[TenantData], str]
    write: bool = False
    params: Callable[[TenantData], dict[str, Any]] | None = None
    body: Callable[[TenantData], Any] | None = None
    # A read whose 200 answer holds the tenant's secret content (so a leak is visible in it).
    shows_secret: bool = False
    content: Callable[[TenantData], bytes] | None = None  # raw body (artifact upload)


def _gql(query: str) -> Callable[[TenantData], dict[str, Any]]:
    return lambda t: {
        "query": query.replace("EXP", t.experiment_id).replace("RUN", t.run_id).replace("MODEL", t.model_name)
    }


def _run_dir(t: TenantData) -> str:
    return posixpath.dirname(t.proxy_artifact_path)  # .../<run>/artifacts/notes


READS: list[Op] = [
    Op(
        "get experiment",
        "GET",
        lambda t: f"{R2}/experiments/get",
        params=lambda t: {"experiment_id": t.experiment_id},
        shows_secret=True,
    ),
    Op(
        "get experiment by name",
        "GET",
        lambda t: f"{R2}/experiments/get-by-name",
        params=lambda t: {"experiment_name": t.experiment_name},
        shows_secret=True,
    ),
    Op(
        "search experiments",
        "POST",
        lambda t: f"{R2}/experiments/search",
        body=lambda t: {"max_results": 1000},
        shows_secret=True,
    ),
    Op(
        "search experiments (GET, ajax)",
        "GET",
        lambda t: "/ajax-api/2.0/mlflow/experiments/search",
        params=lambda t: {"max_results": 1000},
        shows_secret=True,
    ),
    Op("get run", "GET", lambda t: f"{R2}/runs/get", params=lambda t: {"run_id": t.run_id}, shows_secret=True),
    Op(
        "search runs in the experiment",
        "POST",
        lambda t: f"{R2}/runs/search",
        body=lambda t: {"experiment_ids": [t.experiment_id], "max_results": 1000},
        shows_secret=True,
    ),
    Op(
        "metric history",
        "GET",
        lambda t: f"{R2}/metrics/get-history",
        params=lambda t: {"run_id": t.run_id, "metric_key": "loss"},
    ),
    Op(
        "metric history bulk (ajax)",
        "GET",
        lambda t: f"{AJAX}/metrics/get-history-bulk",
        params=lambda t: {"run_id": t.run_id, "metric_key": "loss"},
    ),
    Op(
        "metric history bulk interval",
        "GET",
        lambda t: f"{R2}/metrics/get-history-bulk-interval",
        params=lambda t: {"run_ids": t.run_id, "metric_key": "loss"},
    ),
    Op("list run artifacts", "GET", lambda t: f"{R2}/artifacts/list", params=lambda t: {"run_id": t.run_id}),
    Op(
        "get-artifact (UI route)",
        "GET",
        lambda t: "/get-artifact",
        params=lambda t: {"run_id": t.run_id, "path": "notes/marker.txt"},
        shows_secret=True,
    ),
    Op("artifact proxy download", "GET", lambda t: f"{PROXY}/{t.proxy_artifact_path}", shows_secret=True),
    Op("artifact proxy list", "GET", lambda t: PROXY, params=lambda t: {"path": _run_dir(t)}),
    Op(
        "get registered model",
        "GET",
        lambda t: f"{R2}/registered-models/get",
        params=lambda t: {"name": t.model_name},
        shows_secret=True,
    ),
    Op(
        "search registered models",
        "GET",
        lambda t: f"{R2}/registered-models/search",
        params=lambda t: {"max_results": 1000},
        shows_secret=True,
    ),
    Op(
        "get latest versions",
        "POST",
        lambda t: f"{R2}/registered-models/get-latest-versions",
        body=lambda t: {"name": t.model_name},
        shows_secret=True,
    ),
    Op(
        "get version by alias (champion)",
        "GET",
        lambda t: f"{R2}/registered-models/alias",
        params=lambda t: {"name": t.model_name, "alias": "champion"},
        shows_secret=True,
    ),
    Op(
        "get model version",
        "GET",
        lambda t: f"{R2}/model-versions/get",
        params=lambda t: {"name": t.model_name, "version": t.model_version},
        shows_secret=True,
    ),
    Op(
        "search model versions (by name)",
        "GET",
        lambda t: f"{R2}/model-versions/search",
        params=lambda t: {"filter": f"name='{t.model_name}'"},
        shows_secret=True,
    ),
    Op(
        "search model versions (all)",
        "GET",
        lambda t: f"{R2}/model-versions/search",
        params=lambda t: {"max_results": 1000},
        shows_secret=True,
    ),
    Op(
        "model version download uri",
        "GET",
        lambda t: f"{R2}/model-versions/get-download-uri",
        params=lambda t: {"name": t.model_name, "version": t.model_version},
    ),
    Op("get logged model", "GET", lambda t: f"{R2}/logged-models/{t.logged_model_id}", shows_secret=True),
    Op(
        "search logged models",
        "POST",
        lambda t: f"{R2}/logged-models/search",
        body=lambda t: {"experiment_ids": [t.experiment_id]},
        shows_secret=True,
    ),
    Op("get trace (v3)", "GET", lambda t: f"{R3}/traces/{t.trace_id}", shows_secret=True),
    Op("get trace info (v2)", "GET", lambda t: f"{R2}/traces/{t.trace_id}/info"),
    Op(
        "batch get traces",
        "GET",
        lambda t: f"{R3}/traces/batchGet",
        params=lambda t: {"trace_ids": t.trace_id},
        shows_secret=True,
    ),
    Op(
        "search traces (v3)",
        "POST",
        lambda t: f"{R3}/traces/search",
        body=lambda t: {
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": t.experiment_id}}]
        },
        shows_secret=True,
    ),
    Op("search traces (v2)", "GET", lambda t: f"{R2}/traces", params=lambda t: {"experiment_ids": t.experiment_id}),
    Op(
        "trace data (ajax)",
        "GET",
        lambda t: "/ajax-api/3.0/mlflow/get-trace-artifact",
        params=lambda t: {"request_id": t.trace_id},
        shows_secret=True,
    ),
    Op("get assessment", "GET", lambda t: f"{R3}/traces/{t.trace_id}/assessments/{t.assessment_id}", shows_secret=True),
    Op(
        "get prompt (as registered model)",
        "GET",
        lambda t: f"{R2}/registered-models/get",
        params=lambda t: {"name": t.prompt_name},
    ),
    Op(
        "prompt version (template)",
        "GET",
        lambda t: f"{R2}/model-versions/get",
        params=lambda t: {"name": t.prompt_name, "version": "1"},
        shows_secret=True,
    ),
    Op("get dataset", "GET", lambda t: f"/api/3.0/mlflow/datasets/{t.dataset_id}", shows_secret=True),
    Op(
        "search datasets",
        "POST",
        lambda t: "/api/3.0/mlflow/datasets/search",
        body=lambda t: {"experiment_ids": [t.experiment_id]},
        shows_secret=True,
    ),
    Op(
        "graphql get experiment",
        "POST",
        lambda t: "/graphql",
        shows_secret=True,
        body=_gql('{ mlflowGetExperiment(input: {experimentId: "EXP"}) { experiment { name tags { key value } } } }'),
    ),
    Op(
        "graphql get run",
        "POST",
        lambda t: "/graphql",
        shows_secret=True,
        body=_gql('{ mlflowGetRun(input: {runId: "RUN"}) { run { data { params { key value } } } } }'),
    ),
    Op(
        "graphql search runs",
        "POST",
        lambda t: "/graphql",
        shows_secret=True,
        body=_gql('{ mlflowSearchRuns(input: {experimentIds: ["EXP"]}) { runs { data { params { key value } } } } }'),
    ),
    Op(
        "graphql list artifacts",
        "POST",
        lambda t: "/graphql",
        body=_gql('{ mlflowListArtifacts(input: {runId: "RUN"}) { files { path } } }'),
    ),
    Op(
        "graphql search model versions",
        "POST",
        lambda t: "/graphql",
        shows_secret=True,
        body=_gql(
            "{ mlflowSearchModelVersions(input: {filter: \"name='MODEL'\"}) { modelVersions { tags { key value } } } }"
        ),
    ),
]

WRITES: list[Op] = [
    Op(
        "rename experiment",
        "POST",
        lambda t: f"{R2}/experiments/update",
        write=True,
        body=lambda t: {"experiment_id": t.experiment_id, "new_name": f"{t.experiment_name}-renamed"},
    ),
    Op(
        "set experiment tag",
        "POST",
        lambda t: f"{R2}/experiments/set-experiment-tag",
        write=True,
        body=lambda t: {"experiment_id": t.experiment_id, "key": "k", "value": "v"},
    ),
    Op(
        "delete experiment tag",
        "POST",
        lambda t: f"{R2}/experiments/delete-experiment-tag",
        write=True,
        body=lambda t: {"experiment_id": t.experiment_id, "key": "k"},
    ),
    Op(
        "create run in the experiment",
        "POST",
        lambda t: f"{R2}/runs/create",
        write=True,
        body=lambda t: {"experiment_id": t.experiment_id, "run_name": "intruder"},
    ),
    Op(
        "log metric",
        "POST",
        lambda t: f"{R2}/runs/log-metric",
        write=True,
        body=lambda t: {"run_id": t.run_id, "key": "loss", "value": 99.0, "timestamp": 1, "step": 9},
    ),
    Op(
        "log param",
        "POST",
        lambda t: f"{R2}/runs/log-parameter",
        write=True,
        body=lambda t: {"run_id": t.run_id, "key": "p2", "value": "v"},
    ),
    Op(
        "log batch",
        "POST",
        lambda t: f"{R2}/runs/log-batch",
        write=True,
        body=lambda t: {"run_id": t.run_id, "metrics": [{"key": "loss", "value": 7.0, "timestamp": 1, "step": 7}]},
    ),
    Op(
        "set run tag",
        "POST",
        lambda t: f"{R2}/runs/set-tag",
        write=True,
        body=lambda t: {"run_id": t.run_id, "key": "marker", "value": "overwritten"},
    ),
    Op(
        "delete run tag",
        "POST",
        lambda t: f"{R2}/runs/delete-tag",
        write=True,
        body=lambda t: {"run_id": t.run_id, "key": "marker"},
    ),
    Op(
        "update run",
        "POST",
        lambda t: f"{R2}/runs/update",
        write=True,
        body=lambda t: {"run_id": t.run_id, "status": "FAILED", "run_name": "renamed"},
    ),
    Op(
        "artifact proxy upload",
        "PUT",
        lambda t: f"{PROXY}/{_run_dir(t)}/planted.txt",
        write=True,
        content=lambda t: b"planted",
    ),
    Op(
        "rename registered model",
        "POST",
        lambda t: f"{R2}/registered-models/rename",
        write=True,
        body=lambda t: {"name": t.model_name, "new_name": f"{t.model_name}-renamed"},
    ),
    Op(
        "rename registered model back",
        "POST",
        lambda t: f"{R2}/registered-models/rename",
        write=True,
        body=lambda t: {"name": f"{t.model_name}-renamed", "new_name": t.model_name},
    ),
    Op(
        "update registered model",
        "PATCH",
        lambda t: f"{R2}/registered-models/update",
        write=True,
        body=lambda t: {"name": t.model_name, "description": "overwritten"},
    ),
    Op(
        "set registered model tag",
        "POST",
        lambda t: f"{R2}/registered-models/set-tag",
        write=True,
        body=lambda t: {"name": t.model_name, "key": "k", "value": "v"},
    ),
    Op(
        "create model version",
        "POST",
        lambda t: f"{R2}/model-versions/create",
        write=True,
        body=lambda t: {
            "name": t.model_name,
            "source": f"models:/{t.logged_model_id}",
            "run_id": t.run_id,
            "model_id": t.logged_model_id,
        },
    ),
    Op(
        "move champion alias",
        "POST",
        lambda t: f"{R2}/registered-models/alias",
        write=True,
        body=lambda t: {"name": t.model_name, "alias": "champion", "version": t.model_version},
    ),
    Op(
        "set model version tag",
        "POST",
        lambda t: f"{R2}/model-versions/set-tag",
        write=True,
        body=lambda t: {"name": t.model_name, "version": t.model_version, "key": "k", "value": "v"},
    ),
    Op(
        "update model version",
        "PATCH",
        lambda t: f"{R2}/model-versions/update",
        write=True,
        body=lambda t: {"name": t.model_name, "version": t.model_version, "description": "overwritten"},
    ),
    Op(
        "transition stage",
        "POST",
        lambda t: f"{R2}/model-versions/transition-stage",
        write=True,
        body=lambda t: {
            "name": t.model_name,
            "version": t.model_version,
            "stage": "Archived",
            "archive_existing_versions": False,
        },
    ),
    Op(
        "set logged model tags",
        "PATCH",
        lambda t: f"{R2}/logged-models/{t.logged_model_id}/tags",
        write=True,
        body=lambda t: {"tags": [{"key": "k", "value": "v"}]},
    ),
    Op(
        "log logged model params",
        "POST",
        lambda t: f"{R2}/logged-models/{t.logged_model_id}/params",
        write=True,
        body=lambda t: {"model_id": t.logged_model_id, "params": [{"key": "p2", "value": "v"}]},
    ),
    Op(
        "finalize logged model",
        "PATCH",
        lambda t: f"{R2}/logged-models/{t.logged_model_id}",
        write=True,
        body=lambda t: {"model_id": t.logged_model_id, "status": "LOGGED_MODEL_UPLOAD_FAILED"},
    ),
    Op(
        "set trace tag",
        "PATCH",
        lambda t: f"{R2}/traces/{t.trace_id}/tags",
        write=True,
        body=lambda t: {"key": "k", "value": "v"},
    ),
    Op(
        "create assessment",
        "POST",
        lambda t: f"{R3}/traces/{t.trace_id}/assessments",
        write=True,
        body=lambda t: {
            "assessment": {
                "assessment_name": "intruder",
                "trace_id": t.trace_id,
                "source": {"source_type": "HUMAN", "source_id": "x"},
                "feedback": {"value": False},
            }
        },
    ),
    Op(
        "update assessment",
        "PATCH",
        lambda t: f"{R3}/traces/{t.trace_id}/assessments/{t.assessment_id}",
        write=True,
        body=lambda t: {
            "assessment": {"assessment_id": t.assessment_id, "trace_id": t.trace_id, "rationale": "overwritten"},
            "update_mask": "rationale",
        },
    ),
    Op(
        "set dataset tags",
        "PATCH",
        lambda t: f"/api/3.0/mlflow/datasets/{t.dataset_id}/tags",
        write=True,
        body=lambda t: {"tags": json.dumps({"k": "v"})},
    ),
]

DELETES: list[Op] = [
    Op(
        "delete champion alias",
        "DELETE",
        lambda t: f"{R2}/registered-models/alias",
        write=True,
        body=lambda t: {"name": t.model_name, "alias": "champion"},
    ),
    Op(
        "delete registered model tag",
        "DELETE",
        lambda t: f"{R2}/registered-models/delete-tag",
        write=True,
        body=lambda t: {"name": t.model_name, "key": "marker"},
    ),
    Op(
        "delete model version tag",
        "DELETE",
        lambda t: f"{R2}/model-versions/delete-tag",
        write=True,
        body=lambda t: {"name": t.model_name, "version": t.model_version, "key": "marker"},
    ),
    Op(
        "delete logged model tag", "DELETE", lambda t: f"{R2}/logged-models/{t.logged_model_id}/tags/marker", write=True
    ),
    Op(
        "delete trace tag",
        "DELETE",
        lambda t: f"{R2}/traces/{t.trace_id}/tags",
        write=True,
        body=lambda t: {"key": "k"},
    ),
    Op("delete assessment", "DELETE", lambda t: f"{R3}/traces/{t.trace_id}/assessments/{t.assessment_id}", write=True),
    Op("delete artifact (proxy)", "DELETE", lambda t: f"{PROXY}/{t.proxy_artifact_path}", write=True),
    Op(
        "delete model version",
        "DELETE",
        lambda t: f"{R2}/model-versions/delete",
        write=True,
        body=lambda t: {"name": t.model_name, "version": t.model_version},
    ),
    Op(
        "delete registered model",
        "DELETE",
        lambda t: f"{R2}/registered-models/delete",
        write=True,
        body=lambda t: {"name": t.model_name},
    ),
    Op(
        "delete prompt",
        "DELETE",
        lambda t: f"{R2}/registered-models/delete",
        write=True,
        body=lambda t: {"name": t.prompt_name},
    ),
    Op("delete logged model", "DELETE", lambda t: f"{R2}/logged-models/{t.logged_model_id}", write=True),
    Op(
        "delete traces (by id)",
        "POST",
        lambda t: f"{R3}/traces/delete-traces",
        write=True,
        body=lambda t: {"experiment_id": t.experiment_id, "request_ids": [t.trace_id]},
    ),
    Op(
        "delete traces (by age, v2)",
        "POST",
        lambda t: f"{R2}/traces/delete-traces",
        write=True,
        body=lambda t: {"experiment_id": t.experiment_id, "max_timestamp_millis": 2**53},
    ),
    Op("delete dataset", "DELETE", lambda t: f"/api/3.0/mlflow/datasets/{t.dataset_id}", write=True),
    Op("delete run", "POST", lambda t: f"{R2}/runs/delete", write=True, body=lambda t: {"run_id": t.run_id}),
    Op("restore run", "POST", lambda t: f"{R2}/runs/restore", write=True, body=lambda t: {"run_id": t.run_id}),
    Op(
        "delete experiment",
        "POST",
        lambda t: f"{R2}/experiments/delete",
        write=True,
        body=lambda t: {"experiment_id": t.experiment_id},
    ),
    Op(
        "restore experiment",
        "POST",
        lambda t: f"{R2}/experiments/restore",
        write=True,
        body=lambda t: {"experiment_id": t.experiment_id},
    ),
]

ALL: list[Op] = READS + WRITES + DELETES


def play(client, op: Op, t: TenantData, *, auth: tuple[str, str] | None, workspace: str | None):
    headers = {"X-MLFLOW-WORKSPACE": workspace} if workspace else {}
    kwargs: dict[str, Any] = {"headers": headers, "auth": auth}
    if op.params:
        kwargs["params"] = op.params(t)
    if op.body:
        kwargs["json"] = op.body(t)
    if op.content:
        kwargs["content"] = op.content(t)
    return client.request(op.method, op.path(t), **kwargs)


def leaked(op: Op, t: TenantData, response) -> list[str]:
    """The tenant's names, ids and secret in an answer, other than those the request itself sent."""
    sent = op.path(t) + json.dumps(op.params(t) if op.params else {}) + json.dumps(op.body(t) if op.body else {})
    return [m for m in t.leaked_markers() if m in response.text and m not in sent]


def intruder_problems(client, t: TenantData, *, auth: tuple[str, str] | None, workspace: str | None) -> list:
    """Play the whole table as someone who must reach nothing of ``t``; what went wrong."""
    problems = []
    for op in ALL:
        response = play(client, op, t, auth=auth, workspace=workspace)
        if op.write and response.status_code < 400:
            problems.append((op.name, "write accepted", response.status_code, response.text[:200]))
        if found := leaked(op, t, response):
            problems.append((op.name, "read leaked", found, response.status_code, response.text[:200]))
        if response.status_code >= 500:
            problems.append((op.name, "server error", response.status_code, response.text[:200]))
    return problems
