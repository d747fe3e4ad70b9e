"""The guard's memoized lookups (testbed.mlflow_guard) against a real MLflow server.

Warm caches never outlive a change: a password rotated or a grant revoked through this server is
in force on the next request; one made elsewhere (another worker or replica writing the same auth
database: here this process, through MLflow's own auth store) is in force once the cache's
lifetime (``auth_cache_ttl_seconds``) has passed.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

from operators.mlflow_access import TENANT_ROLE, MlflowCredentials
from tests.mlflow.server import MlflowServer, start_server
from tests.mlflow.tenants import identity

pytestmark = pytest.mark.integration

TTL_SECONDS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[MlflowServer]:
    with start_server(
        tmp_path_factory.mktemp("mlflow-cache") / "s", secured=True, auth_cache_ttl_seconds=TTL_SECONDS
    ) as server:
        yield server


@pytest.fixture(scope="module")
def other_replica(server: MlflowServer) -> Iterator[SqlAlchemyStore]:
    """MLflow's auth store on the server's auth database, as a second replica would write it."""
    store = SqlAlchemyStore()
    store.init_db(f"sqlite:///{Path(server.home) / 'auth.db'}")
    yield store
    store.engine.dispose()


def _tenant_with_run(server: MlflowServer) -> tuple[MlflowCredentials, str]:
    with server.admin() as admin:
        creds = admin.ensure_tenant(f"t{uuid.uuid4().hex[:10]}")
    with identity(creds):
        client = MlflowClient(server.url)
        run_id = client.create_run(client.create_experiment(f"{creds.username}/cache")).info.run_id
    return creds, run_id


def _log_metric(server: MlflowServer, creds: MlflowCredentials, run_id: str, password: str | None = None) -> int:
    """One per-step metric as the tenant (``password``: another one than its own); the HTTP status."""
    response = httpx.post(
        f"{server.url}/api/2.0/mlflow/runs/log-metric",
        auth=(creds.username, password or creds.password),
        headers={"X-MLFLOW-WORKSPACE": creds.workspace},
        json={"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0},
    )
    return response.status_code


def _warm(server: MlflowServer, creds: MlflowCredentials, run_id: str) -> None:
    for _ in range(3):
        assert _log_metric(server, creds, run_id) == 200


def test_rotation_through_the_server_takes_effect_at_once(server):
    creds, run_id = _tenant_with_run(server)
    _warm(server, creds, run_id)
    with server.admin() as admin:
        new = admin.rotate(creds.username)
    assert _log_metric(server, creds, run_id) == 401
    assert _log_metric(server, new, run_id) == 200


def test_revoked_grant_through_the_server_takes_effect_at_once(server, other_replica):
    creds, run_id = _tenant_with_run(server)
    _warm(server, creds, run_id)
    with server.admin() as admin:  # its tenant role and the creator's own grant on the experiment
        roles = admin._call("GET", "/api/3.0/mlflow/users/roles/list", params={"username": creds.username}).json()
        assert roles["roles"]
        for role in roles["roles"]:
            admin._call(
                "DELETE", "/api/3.0/mlflow/roles/unassign", json={"username": creds.username, "role_id": role["id"]}
            )
    assert _log_metric(server, creds, run_id) == 403


def test_rotation_elsewhere_stops_the_old_password_within_the_cache_lifetime(server, other_replica):
    creds, run_id = _tenant_with_run(server)
    _warm(server, creds, run_id)
    new_password = uuid.uuid4().hex + uuid.uuid4().hex
    other_replica.update_user(creds.username, password=new_password)
    time.sleep(TTL_SECONDS + 0.5)
    assert _log_metric(server, creds, run_id) == 401
    assert _log_metric(server, creds, run_id, password=new_password) == 200


def test_revoked_grant_elsewhere_stops_within_the_cache_lifetime(server, other_replica):
    creds, run_id = _tenant_with_run(server)
    _warm(server, creds, run_id)
    user = other_replica.get_user(creds.username)
    roles = other_replica.list_user_roles(user.id)
    assert TENANT_ROLE in {role.name for role in roles}
    for role in roles:
        other_replica.unassign_role_from_user(user.id, role.id)
    time.sleep(TTL_SECONDS + 0.5)
    assert _log_metric(server, creds, run_id) == 403


def test_another_tenants_run_stays_refused_with_warm_caches(server):
    a, a_run = _tenant_with_run(server)
    b, b_run = _tenant_with_run(server)
    _warm(server, a, a_run)
    _warm(server, b, b_run)
    assert _log_metric(server, a, b_run) in (403, 404)
    # b's workspace header with a's login: still a's grants, none there
    response = httpx.post(
        f"{server.url}/api/2.0/mlflow/runs/log-metric",
        auth=(a.username, a.password),
        headers={"X-MLFLOW-WORKSPACE": b.workspace},
        json={"run_id": b_run, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0},
    )
    assert response.status_code in (403, 404)


def _workspace_status(server: MlflowServer, name: str) -> int:
    """The operator (MLflow admin) reads a workspace by name; the HTTP status."""
    with server.admin() as admin:
        return admin._call("GET", f"/api/3.0/mlflow/workspaces/{name}", ok=(200, 404)).status_code


def test_workspace_deleted_through_the_server_is_gone_at_once(server):
    creds, run_id = _tenant_with_run(server)
    _warm(server, creds, run_id)  # each request resolved (and cached) its workspace
    assert _workspace_status(server, creds.workspace) == 200
    with server.admin() as admin:
        admin._call("DELETE", f"/api/3.0/mlflow/workspaces/{creds.workspace}", params={"mode": "CASCADE"}, ok=(204,))
    assert _workspace_status(server, creds.workspace) == 404
    assert _log_metric(server, creds, run_id) != 200


def test_workspace_deleted_elsewhere_is_gone_within_the_cache_lifetime(server):
    creds, run_id = _tenant_with_run(server)
    _warm(server, creds, run_id)
    assert _workspace_status(server, creds.workspace) == 200
    # another replica's delete, in the tracking database this server reads
    with sqlite3.connect(Path(server.home) / "mlflow.db") as db:
        assert db.execute("DELETE FROM workspaces WHERE name = ?", (creds.workspace,)).rowcount == 1
    time.sleep(TTL_SECONDS + 0.5)
    assert _workspace_status(server, creds.workspace) == 404
