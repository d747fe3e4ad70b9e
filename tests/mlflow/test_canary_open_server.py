"""The isolation checks can fail: run against today's server (no access control), they find B
reading and changing A's data. If this file ever passes against a server that leaks nothing, or
the checks here stop finding leaks on the open server, the checks themselves are broken.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from operators.mlflow_access import MlflowCredentials
from tests.mlflow.operations import intruder_problems
from tests.mlflow.server import MlflowServer, start_server
from tests.mlflow.sweep import leaks, sweep
from tests.mlflow.tenants import TenantData, seed

# On an open server the credentials are ignored; they only make the calls look like the secured ones.
A = MlflowCredentials("tenant-a", "ignored-password-a", None)
B = MlflowCredentials("tenant-b", "ignored-password-b", None)


@pytest.fixture(scope="module")
def server(mlflow_home) -> Iterator[MlflowServer]:
    with start_server(mlflow_home / "open", secured=False) as server:
        yield server


@pytest.fixture
def open_server(server) -> tuple[MlflowServer, TenantData]:
    """A fresh copy of A's data per test: on this server, B's writes really happen."""
    return server, seed(server.url, A)


@pytest.mark.integration  # starts a real process
def test_table_finds_the_open_servers_leaks(open_server):
    server, a = open_server
    with httpx.Client(base_url=server.url, timeout=30) as client:
        problems = intruder_problems(client, a, auth=(B.username, B.password), workspace=None)
    kinds = {p[1] for p in problems}
    assert {"write accepted", "read leaked"} <= kinds, problems
    assert any(p[0] == "move champion alias" for p in problems)
    assert any(p[0] == "artifact proxy download" for p in problems)


def test_sweep_finds_the_open_servers_leaks(open_server):
    server, a = open_server
    outcomes = sweep(server.url, a, auth=(B.username, B.password), workspace=None, methods=frozenset({"GET"}))
    leaking = {o.route.path for o in outcomes if leaks(o, a.leaked_markers())}
    for path in (
        "/api/2.0/mlflow/experiments/get",
        "/api/2.0/mlflow/runs/get",
        "/api/2.0/mlflow/registered-models/get",
        "/api/2.0/mlflow/model-versions/search",
        "/ajax-api/2.0/mlflow/runs/get",
    ):
        assert path in leaking, sorted(leaking)


def test_open_server_answers_without_credentials(open_server):
    server, a = open_server
    outcomes = sweep(server.url, a, auth=None, workspace=None, methods=frozenset({"GET"}))
    assert not any(o.status == 401 for o in outcomes)
