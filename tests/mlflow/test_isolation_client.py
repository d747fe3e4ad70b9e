"""Tenant isolation through the MLflow Python client, configured as a job is: env credentials
(``MLFLOW_TRACKING_USERNAME``/``PASSWORD``) and ``MLFLOW_WORKSPACE``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from tests.mlflow.tenants import TenantData, identity, seed

Read = Callable[[MlflowClient, TenantData], Any]

READS: list[tuple[str, Read]] = [
    ("search_experiments", lambda c, a: c.search_experiments(max_results=1000)),
    ("get_experiment", lambda c, a: c.get_experiment(a.experiment_id)),
    ("get_experiment_by_name", lambda c, a: c.get_experiment_by_name(a.experiment_name)),
    ("search_runs (A's experiment)", lambda c, a: c.search_runs([a.experiment_id])),
    ("get_run", lambda c, a: c.get_run(a.run_id)),
    ("get_metric_history", lambda c, a: c.get_metric_history(a.run_id, "loss")),
    ("list_artifacts", lambda c, a: c.list_artifacts(a.run_id)),
    (
        "download_artifacts",
        lambda c, a: Path(c.download_artifacts(a.run_id, "notes/marker.txt", tempfile.mkdtemp())).read_text(),
    ),
    (
        "mlflow.artifacts.download_artifacts (proxy uri)",
        lambda c, a: Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{a.artifact_uri}/notes/marker.txt", dst_path=tempfile.mkdtemp()
            )
        ).read_text(),
    ),
    ("search_registered_models", lambda c, a: c.search_registered_models(max_results=1000)),
    ("get_registered_model", lambda c, a: c.get_registered_model(a.model_name)),
    ("get_latest_versions", lambda c, a: c.get_latest_versions(a.model_name)),
    ("get_model_version_by_alias (champion)", lambda c, a: c.get_model_version_by_alias(a.model_name, "champion")),
    ("search_model_versions", lambda c, a: c.search_model_versions(max_results=1000)),
    ("search_model_versions (A's name)", lambda c, a: c.search_model_versions(f"name='{a.model_name}'")),
    ("get_model_version_download_uri", lambda c, a: c.get_model_version_download_uri(a.model_name, "1")),
    ("search_logged_models", lambda c, a: c.search_logged_models(experiment_ids=[a.experiment_id])),
    ("get_logged_model", lambda c, a: c.get_logged_model(a.logged_model_id)),
    ("search_traces", lambda c, a: c.search_traces(locations=[a.experiment_id])),
    ("get_trace", lambda c, a: c.get_trace(a.trace_id)),
    ("search_prompts", lambda c, a: c.search_prompts()),
    ("load_prompt", lambda c, a: mlflow.genai.load_prompt(f"prompts:/{a.prompt_name}/1", cache_ttl_seconds=0)),
]

WRITES: list[tuple[str, Callable[[MlflowClient, TenantData], Any]]] = [
    ("log_metric", lambda c, a: c.log_metric(a.run_id, "loss", 99.0, step=99)),
    ("log_param", lambda c, a: c.log_param(a.run_id, "intruder", "1")),
    ("set_tag", lambda c, a: c.set_tag(a.run_id, "marker", "overwritten")),
    ("delete_tag", lambda c, a: c.delete_tag(a.run_id, "marker")),
    ("log_artifact into A's run", lambda c, a: c.log_text(a.run_id, "planted", "notes/planted.txt")),
    ("create_run in A's experiment", lambda c, a: c.create_run(a.experiment_id)),
    ("update_run", lambda c, a: c.update_run(a.run_id, status="FAILED")),
    ("set_experiment_tag", lambda c, a: c.set_experiment_tag(a.experiment_id, "k", "v")),
    ("rename_experiment", lambda c, a: c.rename_experiment(a.experiment_id, "stolen")),
    ("set_registered_model_alias (champion)", lambda c, a: c.set_registered_model_alias(a.model_name, "champion", 1)),
    (
        "delete_registered_model_alias (champion)",
        lambda c, a: c.delete_registered_model_alias(a.model_name, "champion"),
    ),
    ("set_registered_model_tag", lambda c, a: c.set_registered_model_tag(a.model_name, "k", "v")),
    ("set_model_version_tag", lambda c, a: c.set_model_version_tag(a.model_name, "1", "k", "v")),
    (
        "create_model_version",
        lambda c, a: c.create_model_version(
            a.model_name, f"models:/{a.logged_model_id}", run_id=a.run_id, model_id=a.logged_model_id
        ),
    ),
    ("rename_registered_model", lambda c, a: c.rename_registered_model(a.model_name, "stolen")),
    ("set_logged_model_tags", lambda c, a: c.set_logged_model_tags(a.logged_model_id, {"k": "v"})),
    ("set_trace_tag", lambda c, a: c.set_trace_tag(a.trace_id, "k", "v")),
    ("log_feedback on A's trace", lambda c, a: mlflow.log_feedback(trace_id=a.trace_id, name="x", value=False)),
    ("delete_traces", lambda c, a: c.delete_traces(a.experiment_id, trace_ids=[a.trace_id])),
    ("delete_model_version", lambda c, a: c.delete_model_version(a.model_name, "1")),
    ("delete_registered_model", lambda c, a: c.delete_registered_model(a.model_name)),
    ("delete_prompt", lambda c, a: c.delete_prompt(a.prompt_name)),
    ("delete_logged_model", lambda c, a: c.delete_logged_model(a.logged_model_id)),
    ("delete_run", lambda c, a: c.delete_run(a.run_id)),
    ("delete_experiment", lambda c, a: c.delete_experiment(a.experiment_id)),
]


def _shows(result: Any, a: TenantData) -> bool:
    """Whether a client result holds A's data (by content or unguessable id)."""
    text = repr(result) + (str(result.to_dictionary()) if hasattr(result, "to_dictionary") else "")
    if isinstance(result, list):
        text += "".join(repr(getattr(item, "info", item)) + repr(getattr(item, "data", "")) for item in result)
    return (
        any(m in text for m in (a.secret, a.run_id, a.logged_model_id, a.trace_id))
        or getattr(result, "experiment_id", None) == a.experiment_id
        or any(
            getattr(item, "experiment_id", None) == a.experiment_id
            for item in (result if isinstance(result, list) else [])
        )
    )


@pytest.mark.parametrize("workspace", ["own", "target"])
def test_other_tenant_client_reads_nothing_and_writes_nothing(secured, workspace):
    a = secured.a_data
    before = secured.a_snapshot()
    shown, accepted = [], []
    with identity(secured.b, workspace=a.tenant if workspace == "target" else None, url=secured.url):
        client = MlflowClient(secured.url)
        for name, read in READS:
            try:
                result = read(client, a)
            except Exception:  # noqa: BLE001 -- refused (MlflowException, or requests' HTTPError from the proxy)
                continue
            if _shows(result, a):
                shown.append((name, repr(result)[:200]))
        for name, write in WRITES:
            try:
                write(client, a)
                accepted.append(name)
            except Exception:  # noqa: BLE001 -- refused; the snapshot below is the real check
                pass
    assert not shown, shown
    assert not accepted, accepted
    assert secured.a_snapshot() == before


def test_search_runs_across_experiments_returns_own_runs_only(secured):
    a, b = secured.a_data, secured.b_data
    with identity(secured.b, url=secured.url):
        runs = MlflowClient(secured.url).search_runs([a.experiment_id, b.experiment_id], max_results=1000)
    assert {r.info.run_id for r in runs} >= {b.run_id} and a.run_id not in {r.info.run_id for r in runs}
    with identity(secured.b, url=secured.url):  # fluent API, the experiment given by name
        frame = mlflow.search_runs(
            experiment_names=[a.experiment_name, b.experiment_name], search_all_experiments=False
        )
    assert b.run_id in set(frame.get("run_id", [])) and a.run_id not in set(frame.get("run_id", []))


def test_owner_client_does_everything_on_its_own(secured):
    fresh = seed(secured.url, secured.a)
    failed = []
    with identity(secured.a, url=secured.url):
        client = MlflowClient(secured.url)
        for name, read in READS:
            try:
                if not _shows(read(client, fresh), fresh) and name not in (
                    "list_artifacts",
                    "get_metric_history",
                    "get_model_version_download_uri",
                    "search_prompts",
                    "load_prompt",
                ):
                    failed.append((name, "answer lacks the owner's data"))
            except Exception as exc:  # noqa: BLE001
                failed.append((name, str(exc)[:200]))
        for name, write in WRITES:
            if name.startswith("rename"):
                continue  # would rename the fixtures the later calls name
            try:
                write(client, fresh)
            except Exception as exc:  # noqa: BLE001
                failed.append((name, str(exc)[:200]))
    assert not failed, failed


def test_operator_client_reads_all_and_writes_nothing(secured):
    a = secured.a_data
    before = secured.a_snapshot()
    unread, accepted = [], []
    with identity(secured.operator, workspace=a.tenant, url=secured.url):
        client = MlflowClient(secured.url)
        for name, read in READS:
            try:
                read(client, a)
            except Exception as exc:  # noqa: BLE001
                unread.append((name, str(exc)[:200]))
        for name, write in WRITES:
            try:
                write(client, a)
                accepted.append(name)
            except Exception:  # noqa: BLE001 -- refused; the snapshot below is the real check
                pass
    assert not unread, unread
    assert not accepted, accepted
    assert secured.a_snapshot() == before
