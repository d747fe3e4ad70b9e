"""One real MLflow server with access control for the module's tests: tenants A and B and the
operator provisioned through ``operators.mlflow_access``, each tenant's data seeded as itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from operators.mlflow_access import MlflowCredentials
from tests.mlflow.server import MlflowServer, provision, start_server
from tests.mlflow.tenants import TenantData, seed, snapshot

TENANT_A = "tenant-a"
TENANT_B = "tenant-b"


@dataclass
class Testbed:
    server: MlflowServer
    operator: MlflowCredentials
    a: MlflowCredentials
    b: MlflowCredentials
    a_data: TenantData
    b_data: TenantData

    @property
    def url(self) -> str:
        return self.server.url

    def a_snapshot(self) -> dict:
        return snapshot(self.url, self.a, self.a_data)


@pytest.fixture(scope="session")
def mlflow_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow-auth")


@pytest.fixture(scope="session")
def secured(mlflow_home: Path) -> Iterator[Testbed]:
    server = start_server(mlflow_home / "secured", secured=True)
    try:
        ids = provision(server, [TENANT_A, TENANT_B])
        a, b = ids.tenants[TENANT_A], ids.tenants[TENANT_B]
        yield Testbed(
            server=server, operator=ids.operator, a=a, b=b, a_data=seed(server.url, a), b_data=seed(server.url, b)
        )
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_ambient_mlflow_identity(monkeypatch):
    """No test inherits MLflow credentials or a workspace from the shell."""
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_WORKSPACE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    yield
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
