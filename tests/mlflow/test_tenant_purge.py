"""testbed tenants purge, MLflow part: after the export, the purge removes the company's MLflow workspace
(experiments, runs, artifacts, registered models, traces, prompts) and its MLflow user, with the control plane's
admin login, on a real access-controlled MLflow server; another company's MLflow data, the ledger and the audit
trail stay, and a restarted control plane does not give the purged company a new workspace."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from operators.mlflow_access import ADMIN_USERNAME, MlflowCredentials
from testbed.cli.main import main
from tests.conftest import NoopPlane
from tests.mlflow.planes import plane_on
from tests.mlflow.server import MlflowServer, start_server
from tests.mlflow.tenants import TenantData, seed, snapshot

pytestmark = pytest.mark.integration

A = "changwon-precision"
B = "geoje-marine-welding"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[MlflowServer]:
    with start_server(tmp_path_factory.mktemp("mlflow-purge"), secured=True) as server:
        yield server


@pytest.fixture()
def plane(server: MlflowServer, tmp_path: Path) -> Iterator[NoopPlane]:
    with plane_on(server, tmp_path) as plane:
        yield plane


def login(plane: NoopPlane, tenant: str) -> MlflowCredentials:
    with plane.client(tenant) as client:
        got = client.mlflow_credentials()
    return MlflowCredentials(got.username, got.password, got.workspace)


def admin_get(server: MlflowServer, path: str, workspace: str | None = None, **params) -> httpx.Response:
    headers = {"X-MLFLOW-WORKSPACE": workspace} if workspace else {}
    return httpx.get(
        f"{server.url}{path}", params=params, headers=headers, auth=(ADMIN_USERNAME, server.admin_password)
    )


def test_purge_removes_the_companys_mlflow_workspace_and_nothing_else(
    plane: NoopPlane, server: MlflowServer, tmp_path: Path, capsys
) -> None:
    a_login, b_login = login(plane, A), login(plane, B)
    a: TenantData = seed(server.url, a_login)
    b: TenantData = seed(server.url, b_login)
    b_before = snapshot(server.url, b_login, b)
    a_artifact = server.home / "artifacts" / a.proxy_artifact_path
    assert a_artifact.read_text() == a.secret  # where the proxied store keeps it, before the purge
    operator = ["--url", plane.url, "--token", plane.token("operator")]
    capsys.readouterr()  # MLflow's own messages while seeding

    assert main(["tenants", "export", A, "--out", str(tmp_path / "handover"), "--json", *operator]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["mlflow_runs"] >= 1 and manifest["mlflow_models"] >= 1  # the export holds it first
    ledger_rows = sqlite3.connect(plane.home / "cp.db").execute("select count(*) from money_ledger").fetchone()[0]

    assert main(["tenants", "purge", A, "--yes", "--json", *operator]) == 0
    result = json.loads(capsys.readouterr().out)["mlflow"]
    assert result["experiments"] >= 1 and result["runs"] >= 1 and result["models"] >= 1
    assert result["artifact_roots"] >= 1 and result["workspace"] and result["user"]

    # the workspace, its experiments, runs and models are gone (as admin: nothing to find), and the user
    assert admin_get(server, f"/api/3.0/mlflow/workspaces/{A}").status_code == 404
    for path, params in (
        ("/api/2.0/mlflow/runs/get", {"run_id": a.run_id}),
        ("/api/2.0/mlflow/experiments/get", {"experiment_id": a.experiment_id}),
        ("/api/2.0/mlflow/registered-models/get", {"name": a.model_name}),
    ):
        for workspace in (A, "default"):
            response = admin_get(server, path, workspace, **params)
            assert response.status_code != 200, (path, workspace, response.text[:200])
    assert admin_get(server, "/api/2.0/mlflow/users/get", username=A).status_code == 404
    with server.admin() as admin:
        assert not admin.check(a_login)  # the company's MLflow login no longer logs in
    assert not a_artifact.exists() and not a_artifact.parent.parent.exists()
    everything = "".join(p.read_text(errors="replace") for p in (server.home / "artifacts").rglob("*") if p.is_file())
    assert a.secret not in everything

    # another company's MLflow data is untouched; the ledger and the audit trail stay
    assert snapshot(server.url, b_login, b) == b_before
    db = sqlite3.connect(plane.home / "cp.db")
    assert db.execute("select count(*) from money_ledger").fetchone()[0] == ledger_rows
    (detail,) = db.execute("select detail from audit_log where tenant=? and kind='tenant.purged'", (A,)).fetchone()
    assert json.loads(detail)["mlflow"] == result

    # provisioning again (as at the next start) does not give the purged company a new workspace
    identities = plane.plane.mlflow
    identities._provisioned = False
    assert identities.provision()
    assert admin_get(server, f"/api/3.0/mlflow/workspaces/{A}").status_code == 404
    assert admin_get(server, f"/api/3.0/mlflow/workspaces/{B}").status_code == 200


def test_purge_is_refused_and_nothing_changes_when_mlflow_does_not_answer(
    plane: NoopPlane, server: MlflowServer, tmp_path: Path
) -> None:
    a_login = login(plane, A)
    with plane.client("operator") as operator:
        operator.download_tenant_archive(A, tmp_path / "a.zip")
        identities = plane.plane.mlflow
        identities.settings = identities.settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:1"})
        with pytest.raises(Exception) as refused:
            operator.purge_tenant(A)
    assert getattr(refused.value, "code", None) == "mlflow_unavailable"
    db = sqlite3.connect(plane.home / "cp.db")
    assert db.execute("select count(*) from tenant_exits where tenant=? and kind='purge'", (A,)).fetchone()[0] == 0
    assert db.execute("select count(*) from tokens where subject=? and revoked_at is not null", (A,)).fetchone()[0] == 0
    with server.admin() as admin:
        assert admin.check(a_login)  # its MLflow login still works: nothing was removed
