"""MLflow outages are seen and bounded (a real MLflow server, killed and brought back; the control plane over real
HTTP): /healthz says so, /v1/mlflow/credentials answers 503, a job's MLflow client gives up within a bounded time
with MLflow's own error naming the server, and the identities are provisioned again when MLflow returns."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from operators.control_plane.backends.ray_jobs import JobLogins
from operators.control_plane.launch import launch_request
from operators.mlflow_access import MlflowCredentials
from testbed.client import TestbedError
from tests.conftest import NoopPlane
from tests.mlflow.planes import control_plane_app
from tests.mlflow.server import REPO, start_server
from tests.mlflow.tenants import identity
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
A = "changwon-precision"
_LOG = "import mlflow; mlflow.set_experiment('{tenant}/outage'); mlflow.log_metric('x', 1.0); print('LOGGED')"


def _health(plane: NoopPlane) -> dict:
    return httpx.get(plane.url + "/healthz", timeout=10).json()


def _run_job(plane: NoopPlane, job_id: str, logins: JobLogins) -> tuple[subprocess.CompletedProcess, float]:
    """Run the job's MLflow logging as the ray backend would: its runtime env, HOME at its login file."""
    request = launch_request(plane.plane.store.get_job(job_id), plane.plane.settings, plane.plane.mlflow.job_env)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(request.runtime_env.env_vars, HOME=str(logins.write(job_id, request.secret_env)), PYTHONPATH=str(REPO))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _LOG.format(tenant=A)], env=env, capture_output=True, text=True, timeout=240
    )
    return done, time.monotonic() - started


def test_mlflow_down_is_seen_bounded_and_recovered(tmp_path: Path):
    from tests.serve import serve_in_thread

    server = start_server(tmp_path / "mlflow-1", secured=True)
    port = int(server.url.rsplit(":", 1)[1])
    app = control_plane_app(server, tmp_path)
    logins = JobLogins(tmp_path / "logins")
    back = None
    try:
        with serve_in_thread(app) as url:
            plane = NoopPlane(url=url, app=app, home=tmp_path)
            alice = plane.client(A)
            assert _health(plane)["mlflow"] == "ok"
            login = alice.mlflow_credentials()
            job = alice.submit(template="smoke")
            done, _ = _run_job(plane, job.id, logins)
            assert done.returncode == 0 and "LOGGED" in done.stdout, done.stderr[-2000:]

            server.stop()  # MLflow goes away
            health = wait_until(
                lambda: (h := _health(plane))["mlflow"] == "unavailable" and h, 30, "health: MLflow down"
            )
            assert health and health["status"] == "ok"  # the database and the backend are fine: jobs still run
            with pytest.raises(TestbedError) as err:
                alice.mlflow_credentials()
            assert (err.value.status_code, err.value.code) == (503, "mlflow_unavailable")
            assert server.url in err.value.detail
            done, seconds = _run_job(plane, job.id, logins)
            print(f"a job's MLflow call with the tracking server gone failed after {seconds:.1f} s")
            assert done.returncode != 0 and "LOGGED" not in done.stdout
            assert server.url in done.stderr and "Max retries exceeded" in done.stderr, done.stderr[-2000:]

            # MLflow returns on the same address from an empty database: the identities are provisioned again
            back = start_server(tmp_path / "mlflow-2", secured=True, port=port, admin_password=server.admin_password)
            wait_until(lambda: _health(plane)["mlflow"] == "ok", 30, "health: MLflow back")
            again = wait_until(lambda: _try(alice.mlflow_credentials), 30, "MLflow credentials again")
            assert again and again.password == login.password
            with identity(MlflowCredentials(again.username, again.password, again.workspace)):
                client = MlflowClient(back.url)
                assert client.create_experiment(f"{A}/after-the-outage")
            done, _ = _run_job(plane, job.id, logins)
            assert done.returncode == 0 and "LOGGED" in done.stdout, done.stderr[-2000:]
    finally:
        server.stop()
        if back is not None:
            back.stop()


def _try(call):
    try:
        return call()
    except TestbedError:
        return None
