"""Handing a company everything it owns (``testbed tenants export``) and then removing it (``testbed tenants purge``).

The archive comes from the control plane (``GET /v1/tenants/{id}/archive``: storage, job records with logs, usage,
money ledger; operators/control_plane/tenant_exit.py). The company's MLflow runs and models come from MLflow's own
REST API, read in the company's workspace with the operator's read-only MLflow login (``GET /v1/mlflow/credentials``):
experiments, runs (params, metrics, tags), their artifacts, registered models with versions and aliases.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from pydantic import BaseModel

from testbed.tls import tls_context

MLFLOW_PAGE = 500


class PurgeRequest(BaseModel):
    confirm: str


class MlflowPurged(BaseModel):
    """What a purge removed from the region's MLflow (the tenant's workspace, as admin)."""

    experiments: int = 0
    runs: int = 0
    models: int = 0
    artifact_roots: int = 0  # experiments whose artifact folder (proxied store) was deleted
    workspace: bool = False
    user: bool = False


class PurgeResult(BaseModel):
    """``POST /v1/tenants/{id}/purge``: what was removed, and what stays for settlement."""

    tenant: str
    export_sha256: str
    exported_at: float
    deleted_files: int
    deleted_bytes: int
    jobs_scrubbed: int
    tokens_revoked: int
    mlflow: MlflowPurged | None = None  # None: this region's MLflow has no access control (no tenant workspace)
    kept: list[str] = ["job rows", "usage totals", "money ledger", "audit trail"]


class ExportManifest(BaseModel):
    """``<out>/<tenant>/manifest.json``: what the export holds."""

    tenant: str
    region: str | None = None
    archive_sha256: str
    archive_bytes: int
    files: int
    mlflow_experiments: int = 0
    mlflow_runs: int = 0
    mlflow_artifacts: int = 0
    mlflow_models: int = 0
    mlflow_note: str | None = None


class MlflowExport(BaseModel):
    experiments: int = 0
    runs: int = 0
    artifacts: int = 0
    models: int = 0


def _safe_join(base: Path, relative: str) -> Path:
    """``base / relative`` refusing any path that leaves ``base`` (an archive or MLflow name is not trusted)."""
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("..", "") or p.startswith("/") for p in parts):
        raise ValueError(f"refusing the path {relative!r}")
    return base.joinpath(*parts)


def unpack(archive: Path, dest: Path) -> int:
    """Unpack the control plane's archive into ``dest`` (names checked); the number of files."""
    count = 0
    with zipfile.ZipFile(archive) as source:
        for info in source.infolist():
            if info.is_dir():
                continue
            target = _safe_join(dest, info.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            with source.open(info) as reader, open(target, "wb") as writer:
                while chunk := reader.read(1 << 20):
                    writer.write(chunk)
            count += 1
    return count


def export_mlflow(
    url: str, username: str | None, password: str | None, workspace: str, dest: Path, timeout: float = 30.0
) -> MlflowExport:
    """The workspace's experiments, runs, run artifacts and registered models into ``dest`` (JSON and files)."""
    auth = (username, password) if username and password else None
    result = MlflowExport()
    with httpx.Client(
        base_url=url.rstrip("/"),
        auth=auth,
        headers={"X-MLFLOW-WORKSPACE": workspace},
        timeout=timeout,
        verify=tls_context(),
    ) as http:

        def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            response = http.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json() if response.content else {}

        def pages(method: str, path: str, key: str, **body: Any) -> list[dict[str, Any]]:
            items, token = [], None
            while True:
                args = {**body, "max_results": MLFLOW_PAGE, **({"page_token": token} if token else {})}
                answer = call(method, path, **({"json": args} if method == "POST" else {"params": args}))
                items += answer.get(key, [])
                token = answer.get("next_page_token")
                if not token:
                    return items

        experiments = pages("POST", "/api/2.0/mlflow/experiments/search", "experiments", view_type="ALL")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "experiments.json").write_text(json.dumps(experiments, indent=1, ensure_ascii=False))
        result.experiments = len(experiments)
        for experiment in experiments:
            runs = pages(
                "POST",
                "/api/2.0/mlflow/runs/search",
                "runs",
                experiment_ids=[experiment["experiment_id"]],
                run_view_type="ALL",
            )
            for run in runs:
                run_id = run["info"]["run_id"]
                folder = _safe_join(dest, f"runs/{run_id}")
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "run.json").write_text(json.dumps(run, indent=1, ensure_ascii=False))
                result.runs += 1
                root = str(run["info"].get("artifact_uri") or "")
                if root.startswith("mlflow-artifacts:"):
                    result.artifacts += _artifacts(call, http, run_id, root, "", folder / "artifacts")
        models = pages("GET", "/api/2.0/mlflow/registered-models/search", "registered_models")
        for model in models:
            model["versions"] = pages(
                "GET", "/api/2.0/mlflow/model-versions/search", "model_versions", filter=f"name='{model['name']}'"
            )
        (dest / "registered_models.json").write_text(json.dumps(models, indent=1, ensure_ascii=False))
        result.models = len(models)
    return result


def _artifacts(call, http: httpx.Client, run_id: str, root: str, path: str, dest: Path) -> int:
    """Download a run's artifacts under ``path`` (through the artifact proxy); how many files."""
    listing = call(
        "GET", "/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, **({"path": path} if path else {})}
    )
    count = 0
    proxy = root.removeprefix("mlflow-artifacts:").lstrip("/")
    for item in listing.get("files", []):
        if item.get("is_dir"):
            count += _artifacts(call, http, run_id, root, item["path"], dest)
            continue
        target = _safe_join(dest, item["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        with http.stream("GET", f"/api/2.0/mlflow-artifacts/artifacts/{proxy}/{item['path']}") as response:
            response.raise_for_status()
            with open(target, "wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
        count += 1
    return count


def export_tenant(client: Any, tenant: str, out: Path) -> ExportManifest:
    """Fetch the tenant's archive into ``out/<tenant>/`` (unpacked, the zip kept beside it) and its MLflow data."""
    from testbed.client import TestbedError

    out.mkdir(parents=True, exist_ok=True)
    folder = out / tenant
    archive = client.download_tenant_archive(tenant, out / f"{tenant}.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    files = unpack(archive, folder)
    manifest = ExportManifest(tenant=tenant, archive_sha256=digest, archive_bytes=archive.stat().st_size, files=files)
    try:
        login = client.mlflow_credentials()
    except TestbedError as exc:
        manifest.mlflow_note = f"MLflow not exported: {exc.detail if hasattr(exc, 'detail') else exc}"
        login = None
    if login is not None:
        try:
            exported = export_mlflow(login.tracking_uri, login.username, login.password, tenant, folder / "mlflow")
        except (httpx.HTTPError, ValueError) as exc:
            manifest.mlflow_note = f"MLflow not exported: {exc}"
        else:
            manifest.mlflow_experiments, manifest.mlflow_runs = exported.experiments, exported.runs
            manifest.mlflow_artifacts, manifest.mlflow_models = exported.artifacts, exported.models
    (folder / "manifest.json").write_text(manifest.model_dump_json(indent=1))
    return manifest
