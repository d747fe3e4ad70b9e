"""Run workload entrypoints as the control plane would: ``python -m <module> ...`` with the job env,
against a real local Ray (started in this process, 2 CPUs, 127.0.0.1) and a real MLflow server
(SQLite + artifact folder, its own process group, killed at teardown). Session-scoped for speed.

These fixtures need no control plane; the lead's ``local_testbed`` (tests/conftest.py) offers the
same two services plus the control plane when a test needs the whole path."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from testbed import jobs
from testbed.mlflow_server import UVICORN_PARTS
from testbed.storage import JOBS, tenant_path
from testbed.templates import get_template

REPO = Path(__file__).resolve().parents[2]


@dataclass
class JobRun:
    returncode: int
    stdout: str
    stderr: str

    def line(self, prefix: str) -> str:
        """The first stdout line starting with ``prefix``."""
        for line in self.stdout.splitlines():
            if line.startswith(prefix):
                return line
        raise AssertionError(
            f"no line starting {prefix!r}; rc={self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr[-4000:]}"
        )

    def fields(self, prefix: str = "result:") -> dict[str, str]:
        """``key=value`` pairs of the ``prefix`` line."""
        return dict(part.split("=", 1) for part in self.line(prefix).split() if "=" in part)


@dataclass
class Workloads:
    """Starts template jobs for a tenant on the local testbed."""

    mlflow_url: str
    ray_address: str
    storage: Path

    def env(self, tenant: str, job_id: str | None = None, cpus: int = 2) -> dict[str, str]:
        job_id = job_id or f"job-{uuid.uuid4().hex[:8]}"
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TESTBED_", "MLFLOW_"))},
            "RAY_ADDRESS": self.ray_address,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep 127.0.0.1 as is (tests/conftest.py sets it here too)
            jobs.ENV_MLFLOW_TRACKING_URI: self.mlflow_url,
            jobs.ENV_TENANT: tenant,
            jobs.ENV_JOB_ID: job_id,
            jobs.ENV_REGION: "gyeongnam",
            jobs.ENV_STORAGE_PATH: tenant_path(str(self.storage), tenant, JOBS, job_id),  # the control plane's layout
            jobs.ENV_CPUS: str(cpus),
            jobs.ENV_GPUS: "0",
            jobs.ENV_RUN_TAGS: json.dumps({"testbed.suite": "workloads"}),
        }

    def run(
        self,
        template: str,
        tenant: str = "test-tenant",
        timeout: float = 180,
        job_id: str | None = None,
        **params: object,
    ) -> JobRun:
        """Run the template's command exactly as the catalogue builds it."""
        spec = get_template(template)
        command = spec.command(spec.resolve(dict(params)))  # type: ignore[arg-type]
        return self.run_command(command, tenant, timeout, job_id)

    def run_command(
        self, command: str, tenant: str = "test-tenant", timeout: float = 180, job_id: str | None = None
    ) -> JobRun:
        """Run a job's entrypoint (``python -m ...``, e.g. as the control plane admitted it) with the job env."""
        argv = [sys.executable, *shlex.split(command)[1:]]
        done = subprocess.run(
            argv, cwd=self.storage, env=self.env(tenant, job_id), capture_output=True, text=True, timeout=timeout
        )
        return JobRun(done.returncode, done.stdout, done.stderr)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """An ``mlflow server`` on 127.0.0.1 with SQLite and a local artifact folder; its URL."""
    home = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    argv = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "artifacts"),
        *UVICORN_PARTS,
    ]
    log = open(home / "server.log", "wb")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start; see {home / 'server.log'}") from None
                time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """A local Ray started in this process (2 CPUs, 127.0.0.1); job drivers join it via RAY_ADDRESS."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def workloads(mlflow_server, ray_address, tmp_path_factory) -> Workloads:
    return Workloads(mlflow_server, ray_address, tmp_path_factory.mktemp("workloads"))


@pytest.fixture(scope="session")
def mlflow_client(workloads: Workloads) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=workloads.mlflow_url, registry_uri=workloads.mlflow_url)
