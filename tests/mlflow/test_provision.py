"""operators.mlflow_access.provision against a real server: create, re-assert, rotate, remove."""

from __future__ import annotations

import uuid

import httpx
import pytest
from mlflow import MlflowClient

from operators.mlflow_access import (
    OPERATOR_ROLE,
    TENANT_ROLE,
    MlflowAccessAdmin,
    MlflowAccessError,
    MlflowCredentials,
)
from operators.mlflow_access.provision import OPERATOR_GRANTS, TENANT_GRANTS
from tests.mlflow.tenants import identity


def _tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _logs_in(url: str, creds: MlflowCredentials) -> int:
    return httpx.get(f"{url}/api/2.0/mlflow/users/current", auth=(creds.username, creds.password)).status_code


def _role_grants(admin_http: httpx.Client, workspace: str, role: str) -> set[tuple[str, str, str]]:
    roles = admin_http.get("/api/3.0/mlflow/roles/list", params={"workspace": workspace}).json()["roles"]
    role_id = next(r["id"] for r in roles if r["name"] == role)
    perms = admin_http.get("/api/3.0/mlflow/roles/permissions/list", params={"role_id": role_id}).json()
    return {(p["resource_type"], p["resource_pattern"], p["permission"]) for p in perms["role_permissions"]}


@pytest.fixture
def admin(secured):
    with secured.server.admin() as admin:
        yield admin


@pytest.fixture
def admin_http(secured):
    with httpx.Client(base_url=secured.url, auth=("_admin", secured.server.admin_password), timeout=30) as client:
        yield client


def test_tenant_layout(secured, admin, admin_http):
    tenant = _tenant()
    creds = admin.ensure_tenant(tenant)
    assert (creds.username, creds.workspace) == (tenant, tenant) and len(creds.password) >= 32
    assert _logs_in(secured.url, creds) == 200
    assert _role_grants(admin_http, tenant, TENANT_ROLE) == TENANT_GRANTS
    assert _role_grants(admin_http, tenant, OPERATOR_ROLE) == OPERATOR_GRANTS
    me = httpx.get(f"{secured.url}/api/2.0/mlflow/users/current", auth=(creds.username, creds.password)).json()
    assert me["user"]["is_admin"] is False
    op = httpx.get(
        f"{secured.url}/api/2.0/mlflow/users/current", auth=(secured.operator.username, secured.operator.password)
    ).json()
    assert op["user"]["is_admin"] is False
    # Nothing is ever granted in the default workspace.
    assert admin_http.get("/api/3.0/mlflow/roles/list", params={"workspace": "default"}).json().get("roles", []) == []


def test_reasserting_is_idempotent_and_repairs_drift(secured, admin, admin_http):
    tenant = _tenant()
    creds = admin.ensure_tenant(tenant)
    roles = admin_http.get("/api/3.0/mlflow/roles/list", params={"workspace": tenant}).json()["roles"]
    role_id = next(r["id"] for r in roles if r["name"] == TENANT_ROLE)
    admin_http.post(
        "/api/3.0/mlflow/roles/permissions/add",
        json={"role_id": role_id, "resource_type": "gateway_secret", "resource_pattern": "*", "permission": "MANAGE"},
    )
    again = admin.ensure_tenant(tenant, creds.password)
    assert again == creds
    assert _role_grants(admin_http, tenant, TENANT_ROLE) == TENANT_GRANTS  # the hand-added grant is gone
    assert len(admin_http.get("/api/3.0/mlflow/roles/list", params={"workspace": tenant}).json()["roles"]) == 2
    assert _logs_in(secured.url, creds) == 200


def test_existing_user_needs_its_password_or_a_rotation(secured, admin):
    tenant = _tenant()
    creds = admin.ensure_tenant(tenant)
    with pytest.raises(MlflowAccessError) as raised:
        admin.ensure_tenant(tenant)
    assert creds.password not in str(raised.value)


def test_rotation(secured, admin):
    tenant = _tenant()
    old = admin.ensure_tenant(tenant)
    new = admin.rotate(tenant)
    assert new.password != old.password and new.workspace == tenant
    assert _logs_in(secured.url, old) == 401
    assert _logs_in(secured.url, new) == 200
    assert admin.check(new) and not admin.check(old)


def test_removal_keeps_the_data(secured, admin, admin_http):
    tenant = _tenant()
    creds = admin.ensure_tenant(tenant)
    with identity(creds):
        experiment_id = MlflowClient(secured.url).create_experiment(f"{tenant}/kept")
    admin.remove_tenant(tenant)
    assert _logs_in(secured.url, creds) == 401
    kept = admin_http.get(
        "/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment_id},
        headers={"X-MLFLOW-WORKSPACE": tenant},
    )
    assert kept.status_code == 200
    admin.remove_tenant(tenant)  # idempotent


def test_wrong_admin_password_fails_loudly_without_echoing_it(secured):
    with MlflowAccessAdmin(secured.url, "not-the-admin-password") as admin, pytest.raises(MlflowAccessError) as raised:
        admin.ensure_tenant(_tenant())
    assert "401" in str(raised.value) and "not-the-admin-password" not in str(raised.value)


def test_late_operator_gets_read_access_everywhere(secured, admin):
    tenant = _tenant()
    admin.ensure_tenant(tenant)
    with MlflowAccessAdmin(secured.url, secured.server.admin_password, operator_username="_auditor") as other:
        auditor = other.ensure_operator()
        other.grant_operator_read([tenant])
    with identity(auditor, workspace=tenant):
        assert MlflowClient(secured.url).search_experiments() == []  # reads, finds nothing yet, no 403


def test_first_run_needs_only_workspace_membership_and_the_creator_gets_manage(secured, admin_http):
    """MLflow's own creator grant: a member with nothing but (workspace, *, USE) creates an experiment
    and logs its first run; the server records MANAGE on that experiment for the creator."""
    workspace, user, password = _tenant(), f"bare-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    admin_http.post("/api/3.0/mlflow/workspaces", json={"name": workspace}).raise_for_status()
    admin_http.post("/api/2.0/mlflow/users/create", json={"username": user, "password": password}).raise_for_status()
    role = admin_http.post("/api/3.0/mlflow/roles/create", json={"workspace": workspace, "name": "member"}).json()[
        "role"
    ]
    admin_http.post(
        "/api/3.0/mlflow/roles/permissions/add",
        json={"role_id": role["id"], "resource_type": "workspace", "resource_pattern": "*", "permission": "USE"},
    ).raise_for_status()
    admin_http.post("/api/3.0/mlflow/roles/assign", json={"username": user, "role_id": role["id"]}).raise_for_status()
    with identity(MlflowCredentials(user, password, workspace)):
        client = MlflowClient(secured.url)
        experiment_id = client.create_experiment(f"{workspace}/first")
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "loss", 1.0)
        client.set_terminated(run.info.run_id)
    grant = admin_http.get(
        "/api/3.0/mlflow/users/permissions/get",
        headers={"X-MLFLOW-WORKSPACE": workspace},
        params={"username": user, "resource_type": "experiment", "resource_id": experiment_id},
    ).json()
    assert grant["permission"] == "MANAGE"
