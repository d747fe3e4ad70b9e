"""The table of what the local testbed runs: Ray head, MLflow server, control plane, in start order.

Each entry names its ports (all on 127.0.0.1), how to build its command line and extra
environment, its URL and how to tell it is healthy. The supervisor runs whatever is listed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Callable

import httpx

from testbed.config import stack_file_for
from testbed.local.errors import LocalTestbedError
from testbed.local.ports import HOST
from testbed.local.state import LocalState, StateFolder
from testbed.settings import ControlPlaneSettings

# Ray turns --node-ip-address=127.0.0.1 into the machine's routable address unless it runs in
# its single-machine mode; this keeps every Ray process (GCS, raylet, dashboard) on loopback.
RAY_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}

_MAX_UNIX_SOCKET_PATH = 107  # AF_UNIX limit; Ray puts sockets under its temp folder
_RAY_SOCKET_SUFFIX = 64  # what Ray adds to it: /session_<date>_<time>_<usec>_<pid>/sockets/plasma_store
_BIN = Path(sys.executable).parent  # this environment's scripts: ray, mlflow, python


@dataclass(frozen=True)
class Component:
    """One row of the table: the supervisor allocates its ports, runs its command, asks its health."""

    name: str
    ports: tuple[str, ...]  # named ports, allocated free on 127.0.0.1
    command: Callable[[StateFolder, LocalState], list[str]]  # may write the config file it names
    url: Callable[[LocalState], str]  # what ``status`` reports
    health_path: str  # healthy: GET url + health_path answers 200 ...
    ready: Callable[[httpx.Response], bool] = lambda _response: True  # ... and this holds
    env: Callable[[StateFolder, LocalState], dict[str, str]] = lambda _folder, _state: {}
    ray_auth: bool = False  # the health check presents the Ray token

    def healthy(self, folder: StateFolder, state: LocalState) -> bool:
        headers = folder.ray_auth_headers() if self.ray_auth else None
        try:
            response = httpx.get(self.url(state) + self.health_path, headers=headers, timeout=2.0)
            return response.status_code == 200 and self.ready(response)
        except httpx.HTTPError:
            return False


# -- Ray head -------------------------------------------------------------------------------
# every port Ray opens; the two metrics servers have fixed defaults (44217, 44227) unless set by
# environment, which could take a port handed to another name (or another testbed's)
_RAY_PORTS = ("gcs", "dashboard", "client", "agent_listen", "agent_grpc", "metrics", "runtime_env",
              "node_manager", "object_manager", "autoscaler_metrics", "dashboard_metrics")


def _ray_command(folder: StateFolder, state: LocalState) -> list[str]:
    temp = folder.home / "ray"
    if len(str(temp)) + _RAY_SOCKET_SUFFIX > _MAX_UNIX_SOCKET_PATH:
        raise LocalTestbedError(
            f"state folder {folder.home} is too long for Ray's socket paths (at most "
            f"{_MAX_UNIX_SOCKET_PATH - _RAY_SOCKET_SUFFIX - len('/ray')} characters); "
            "set TESTBED_HOME to a shorter path"
        )
    ports = state.components["ray"].ports
    return [
        str(_BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        f"--node-ip-address={HOST}", f"--port={ports['gcs']}",
        "--include-dashboard=true", f"--dashboard-host={HOST}", f"--dashboard-port={ports['dashboard']}",
        f"--ray-client-server-port={ports['client']}",
        f"--dashboard-agent-listen-port={ports['agent_listen']}", f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
        f"--metrics-export-port={ports['metrics']}", f"--runtime-env-agent-port={ports['runtime_env']}",
        f"--node-manager-port={ports['node_manager']}", f"--object-manager-port={ports['object_manager']}",
        f"--num-cpus={state.num_cpus}", "--num-gpus=0", f"--object-store-memory={512 * 2**20}",
        f"--temp-dir={temp}",
    ]


def _ray_env(folder: StateFolder, state: LocalState) -> dict[str, str]:
    ports = state.components["ray"].ports
    # Jobs' `python` is this environment's interpreter, so `workloads` and its pins are there.
    path = f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        **RAY_LOOPBACK_ENV, **folder.ray_auth_env(), "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "RAY_ADDRESS": "",
        "PATH": path, "AUTOSCALER_METRIC_PORT": str(ports["autoscaler_metrics"]),
        "DASHBOARD_METRIC_PORT": str(ports["dashboard_metrics"]),
    }


def _ray_node_registered(response: httpx.Response) -> bool:
    """The head node has registered its CPUs, so its raylet is up (the dashboard alone is not)."""
    try:
        return "CPU" in response.json()["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
    except (ValueError, KeyError, TypeError):
        return False


# -- MLflow tracking server -----------------------------------------------------------------
def _mlflow_command(folder: StateFolder, state: LocalState) -> list[str]:
    return [
        str(_BIN / "mlflow"), "server", "--host", HOST, "--port", str(state.port("mlflow", "http")), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder.home / 'mlflow' / 'mlflow.db'}",
        "--artifacts-destination", str(folder.home / "mlflow" / "artifacts"),
        "--serve-artifacts",
    ]


# -- control plane --------------------------------------------------------------------------
def _control_plane_command(folder: StateFolder, state: LocalState) -> list[str]:
    """Writes ``control-plane.json`` (``ControlPlaneSettings``) and runs the plane from it."""
    settings = ControlPlaneSettings(
        stack_file=stack_file_for(state.region), database_url=folder.database_url, backend="ray",
        ray_address=state.ray_dashboard_url, mlflow_tracking_uri=state.mlflow_url,
        storage_path=str(folder.home / "storage"), capacity_cpus=state.num_cpus, capacity_gpus=0,
        credentials_dir=folder.credentials_dir, host=HOST, port=state.port("control_plane", "http"),
    )
    settings_path = folder.home / "control-plane.json"
    settings.write(settings_path)
    return [sys.executable, "-m", "operators.control_plane", "--settings", str(settings_path)]


COMPONENTS: tuple[Component, ...] = (
    Component(
        name="ray", ports=_RAY_PORTS, command=_ray_command, env=_ray_env,
        url=attrgetter("ray_dashboard_url"), health_path="/api/cluster_status", ready=_ray_node_registered,
        ray_auth=True,
    ),
    Component(
        name="mlflow", ports=("http",), command=_mlflow_command,
        env=lambda _folder, _state: {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        url=attrgetter("mlflow_url"), health_path="/health",
    ),
    Component(
        name="control_plane", ports=("http",), command=_control_plane_command,
        env=lambda folder, _state: {**RAY_LOOPBACK_ENV, **folder.ray_auth_env()},
        url=attrgetter("control_plane_url"), health_path="/healthz",
    ),
)
