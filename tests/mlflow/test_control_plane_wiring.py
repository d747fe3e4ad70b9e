"""The control plane wired to a real MLflow server with access control (as `testbed up` runs it):
it provisions every tenant and the operator at start, hands each job only its own tenant's login,
serves ``GET /v1/mlflow/credentials``, and a rotated token rotates the tenant's MLflow password.
The jobs' MLflow calls run in-process with exactly the job env the backend is given."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from operators.control_plane.launch import launch_request
from operators.mlflow_access import ADMIN_USERNAME, OPERATOR_USERNAME, MlflowCredentials
from testbed.client import TestbedClient, TestbedError
from testbed.secrets import write_secret
from tests.conftest import NoopPlane
from tests.mlflow.planes import plane_on
from tests.mlflow.server import MlflowServer, start_server
from tests.mlflow.tenants import identity

A = "changwon-precision"
B = "geoje-marine-welding"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[MlflowServer]:
    with start_server(tmp_path_factory.mktemp("mlflow-wired"), secured=True) as server:
        yield server


@pytest.fixture()
def plane(server: MlflowServer, tmp_path: Path) -> Iterator[NoopPlane]:
    with plane_on(server, tmp_path) as plane:
        yield plane


def job_env(plane: NoopPlane, tenant: str) -> tuple[dict[str, str], dict]:
    """A job of ``tenant`` submitted through the API: the env the backend is asked to give it, and its API view."""
    with plane.client(tenant) as client:
        job = client.submit(template="smoke")
    row = plane.plane.store.get_job(job.id)
    request = launch_request(row, plane.plane.settings, plane.plane.mlflow.job_env)
    password = request.secret_env["MLFLOW_TRACKING_PASSWORD"]
    # the login is a secret apart: never in the runtime env (Ray logs it and shows it to every token holder)
    assert password not in json.dumps(request.runtime_env.to_ray()) + request.model_dump_json() + repr(request)
    return {**request.runtime_env.env_vars, **request.secret_env}, job.model_dump()


def as_job(env: dict[str, str]) -> MlflowCredentials:
    return MlflowCredentials(env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"], env["MLFLOW_WORKSPACE"])


def test_jobs_get_their_own_tenants_login_and_nobody_elses(plane: NoopPlane, server: MlflowServer):
    a_env, a_view = job_env(plane, A)
    b_env, b_view = job_env(plane, B)
    assert (a_env["MLFLOW_TRACKING_USERNAME"], a_env["MLFLOW_WORKSPACE"]) == (A, A)
    assert (b_env["MLFLOW_TRACKING_USERNAME"], b_env["MLFLOW_WORKSPACE"]) == (B, B)
    assert a_env["MLFLOW_TRACKING_PASSWORD"] != b_env["MLFLOW_TRACKING_PASSWORD"]
    assert server.admin_password not in json.dumps(b_env) and ADMIN_USERNAME not in json.dumps(b_env)
    assert a_env["MLFLOW_TRACKING_PASSWORD"] not in json.dumps(b_env)
    # never in the API's job view nor in the stored record
    for tenant, env, view in ((A, a_env, a_view), (B, b_env, b_view)):
        assert env["MLFLOW_TRACKING_PASSWORD"] not in json.dumps(view)
        with plane.client(tenant) as client:
            assert env["MLFLOW_TRACKING_PASSWORD"] not in client.get_job(view["id"]).model_dump_json()
        row = plane.plane.store.get_job(view["id"])
        assert env["MLFLOW_TRACKING_PASSWORD"] not in json.dumps(row.spec) + (row.logs or "") + (row.message or "")

    # A's job logs a run and registers a model with the champion alias, in its own workspace
    with identity(as_job(a_env)):
        client = MlflowClient(server.url)
        experiment_id = client.create_experiment(f"{A}/wired")
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "accuracy", 0.9)
        client.set_terminated(run.info.run_id)
        client.create_registered_model(f"{A}.wired")
        version = client.create_model_version(f"{A}.wired", f"runs:/{run.info.run_id}/model", run.info.run_id)
        client.set_registered_model_alias(f"{A}.wired", "champion", version.version)
        assert client.get_model_version_by_alias(f"{A}.wired", "champion").version == version.version

    # B, with its job's login or the one the control plane hands it, sees none of it, even naming A's workspace
    with plane.client(B) as b_client:
        b_login = b_client.mlflow_credentials()
    assert (b_login.username, b_login.workspace, b_login.tracking_uri) == (B, B, server.url)
    assert b_login.password == b_env["MLFLOW_TRACKING_PASSWORD"]
    for workspace in (B, A):
        with identity(as_job(b_env), workspace=workspace):
            client = MlflowClient(server.url)
            with pytest.raises(MlflowException):
                client.get_run(run.info.run_id)
            with pytest.raises(MlflowException):
                client.get_registered_model(f"{A}.wired")
            assert client.get_experiment_by_name(f"{A}/wired") is None if workspace == B else True
            with pytest.raises(MlflowException):
                client.get_experiment(experiment_id)

    # no login, no MLflow
    assert httpx.get(f"{server.url}/api/2.0/mlflow/experiments/search", params={"max_results": 10}).status_code == 401
    assert httpx.get(f"{server.url}/health").status_code == 200  # what `testbed up` checks


def test_the_operator_reads_every_tenant_and_writes_nothing(plane: NoopPlane, server: MlflowServer):
    a_env, _ = job_env(plane, A)
    with identity(as_job(a_env)):
        experiment_id = MlflowClient(server.url).create_experiment(f"{A}/read-by-operator")
    with plane.client("operator") as operator:
        login = operator.mlflow_credentials()
    assert (login.username, login.workspace) == (OPERATOR_USERNAME, None)
    with identity(MlflowCredentials(login.username, login.password), workspace=A):
        client = MlflowClient(server.url)
        assert client.get_experiment(experiment_id).name == f"{A}/read-by-operator"
        with pytest.raises(MlflowException):
            client.create_experiment(f"{A}/operator-write")


def test_rotating_a_token_rotates_the_mlflow_password(plane: NoopPlane, server: MlflowServer):
    old_token = plane.token(A)
    with plane.client(A) as client:
        old = client.mlflow_credentials()
    with plane.client("operator") as operator:
        new_token = operator.rotate_token(A).token
    with TestbedClient(plane.url, new_token) as client:
        new = client.mlflow_credentials()
    assert new.password != old.password
    auth = f"{server.url}/api/2.0/mlflow/users/current"
    assert httpx.get(auth, auth=(A, new.password), headers={"X-MLFLOW-WORKSPACE": A}).status_code == 200
    assert httpx.get(auth, auth=(A, old.password), headers={"X-MLFLOW-WORKSPACE": A}).status_code == 401
    with TestbedClient(plane.url, old_token) as stale, pytest.raises(TestbedError):
        stale.mlflow_credentials()  # the old token itself is gone too


def test_a_restart_provisions_again_without_changing_anything(plane: NoopPlane, server: MlflowServer):
    from operators.control_plane.mlflow_identities import MlflowIdentities

    with plane.client(B) as client:
        before = client.mlflow_credentials()
    again = MlflowIdentities(plane.plane.settings, plane.plane.store, plane.plane.tenants)
    assert again.provision()
    assert again.tenant_credentials(B).password == before.password
    assert os.stat(plane.plane.settings.mlflow_admin_password_file).st_mode & 0o077 == 0


def test_cli_prints_the_login_to_eval(plane: NoopPlane, capsys):
    from embedded.cli import main

    assert main(["mlflow", "login", "--url", plane.url, "--token", plane.token(B)]) == 0
    text = capsys.readouterr().out
    with plane.client(B) as client:
        login = client.mlflow_credentials()
    for name, value in login.env().items():
        assert f"export {name}={value}\n" in text
    assert f"MLflow UI: {login.tracking_uri}" in text and "browser" in text
    assert main(["mlflow", "login", "--json", "--url", plane.url, "--token", plane.token(B)]) == 0
    assert json.loads(capsys.readouterr().out)["workspace"] == B


def test_an_unreachable_mlflow_holds_no_dispatch_back(tmp_path, monkeypatch):
    """Jobs still get their (derived) login; MLflow is asked again only after a pause, not at every dispatch."""
    from operators.control_plane.mlflow_identities import RETRY_SECONDS, MlflowIdentities
    from tests.clock import ManualClock
    from operators.control_plane.db.store import Store
    from testbed.config import stack_file_for
    from tests.replicas import noop_settings

    password_file = tmp_path / "admin.password"
    write_secret(password_file, "an-admin-password-of-some-length")
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    settings = noop_settings(tmp_path, stack_file_for("gyeongnam"), url, mlflow_admin_password_file=password_file)
    store = Store(settings.database_url)
    try:
        clock = ManualClock()
        identities = MlflowIdentities(settings, store, [A, B], clock=clock)
        tries = []
        real_admin = identities._admin
        monkeypatch.setattr(identities, "_admin", lambda: tries.append(1) or real_admin())
        assert not identities.provision()
        env = identities.job_env(A)
        assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_WORKSPACE"]) == (A, A) and env["MLFLOW_TRACKING_PASSWORD"]
        identities.job_env(B)
        assert len(tries) == 1
        clock.advance(RETRY_SECONDS - 1)
        identities.job_env(B)
        assert len(tries) == 1  # still inside the pause
        clock.advance(1)  # the pause is over
        identities.job_env(B)
        assert len(tries) == 2
    finally:
        store.close()
