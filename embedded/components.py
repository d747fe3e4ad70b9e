"""The table of what the local testbed runs: Ray head, MLflow server, control plane, in start order.

Each entry names its ports (all on 127.0.0.1), how to build its command line and extra
environment, its URL and how to tell it is healthy. The supervisor runs whatever is listed.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Callable, Mapping

import httpx
import psutil

from operators.mlflow_access import LocalServerAuth, local_server_auth
from testbed.config import stack_file_for
from embedded.errors import LocalTestbedError
from embedded.ports import HOST
from embedded.state import LocalState, StateFolder
from testbed.secrets import write_secret
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
    runs_jobs: bool = False  # tenants' jobs inherit its environment and working directory
    stop_grace: float = 30.0  # seconds between SIGTERM and SIGKILL of its process group
    # adoption of a running component whose state.json was lost: is this its group leader, and its ports
    owns: Callable[[list[str]], bool] = lambda _argv: False
    ports_of: Callable[[list[str], dict[str, str]], dict[str, int]] = lambda _argv, _env: {}

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
_RAY_PORTS = (
    "gcs",
    "dashboard",
    "client",
    "agent_listen",
    "agent_grpc",
    "metrics",
    "runtime_env",
    "node_manager",
    "object_manager",
    "autoscaler_metrics",
    "dashboard_metrics",
)


# the ray start flag of each named port (the two metrics servers' ports are environment variables)
RAY_PORT_FLAGS = {
    "gcs": "--port",
    "dashboard": "--dashboard-port",
    "client": "--ray-client-server-port",
    "agent_listen": "--dashboard-agent-listen-port",
    "agent_grpc": "--dashboard-agent-grpc-port",
    "metrics": "--metrics-export-port",
    "runtime_env": "--runtime-env-agent-port",
    "node_manager": "--node-manager-port",
    "object_manager": "--object-manager-port",
}
_RAY_PORT_ENV = {"autoscaler_metrics": "AUTOSCALER_METRIC_PORT", "dashboard_metrics": "DASHBOARD_METRIC_PORT"}
OBJECT_STORE_BYTES = 512 * 2**20
# What jobs never inherit from whoever ran `testbed up`: paths to the platform's state and
# credentials, and the operator's cloud and cluster credentials.
PLATFORM_ENV_PREFIXES = ("TESTBED_", "RAY_AUTH_", "RAY_ADDRESS", "MLFLOW_TRACKING_", "KUBECONFIG", "PULUMI_", "AWS_")


def node_memory() -> int:
    """Bytes of memory jobs may reserve on this machine: Ray's ``--memory`` and the control plane's capacity."""
    return max(psutil.virtual_memory().total // 2**20 * 2**20 - OBJECT_STORE_BYTES, 2**30)  # whole MiB


def jobs_dir(state: LocalState) -> Path:
    """Where jobs run (Ray's working directory): outside the state folder, the platform's own (as root 0711: the
    jobs' user passes through to what is handed to it, ``embedded.jobs_user``, and can rename nothing in it)."""
    path = Path(tempfile.gettempdir()) / f"testbed-jobs-{state.instance}"
    path.mkdir(mode=0o700, exist_ok=True)
    found = path.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
        raise LocalTestbedError(f"{path} is not a folder of this user's: remove it (something else made it)")
    os.chmod(path, 0o711 if os.geteuid() == 0 else 0o700)
    return path


def job_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the platform's variables (``PLATFORM_ENV_PREFIXES``)."""
    return {k: v for k, v in environ.items() if not k.startswith(PLATFORM_ENV_PREFIXES)}


def _flag_values(argv: list[str]) -> dict[str, str]:
    """``--flag=value`` and ``--flag value`` pairs of a command line."""
    values = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            name, sep, value = arg.partition("=")
            values[name] = value if sep else (argv[i + 1] if i + 1 < len(argv) else "")
    return values


def _runs(argv: list[str], program: str, *words: str) -> bool:
    """The command line runs ``program`` (a script or a module) with ``words`` among its arguments."""
    return program in [os.path.basename(arg) for arg in argv[:3]] and all(word in argv for word in words)


def _ray_ports(argv: list[str], env: dict[str, str]) -> dict[str, int]:
    flags = _flag_values(argv)
    ports = {name: int(flags[flag]) for name, flag in RAY_PORT_FLAGS.items() if flags.get(flag, "").isdigit()}
    ports.update({name: int(env[var]) for name, var in _RAY_PORT_ENV.items() if env.get(var, "").isdigit()})
    return ports


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
        str(_BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--disable-usage-stats",
        f"--node-ip-address={HOST}",
        "--include-dashboard=true",
        f"--dashboard-host={HOST}",
        *(f"{flag}={ports[name]}" for name, flag in RAY_PORT_FLAGS.items()),
        f"--num-cpus={state.num_cpus}",
        f"--num-gpus={state.num_gpus}",
        f"--memory={node_memory()}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--temp-dir={temp}",
    ]


def jobs_ray_token(folder: StateFolder, state: LocalState) -> Path:
    """A 0600 copy of the Ray token in the jobs' own folder (outside the state folder): jobs must reach their Ray,
    and neither Ray's environment nor its logs then hold the token's value."""
    folder.ray_auth_env()  # makes the token if there is none yet
    path = jobs_dir(state) / "ray.token"
    write_secret(path, folder.ray_token_file.read_text().strip())
    return path


def _ray_env(folder: StateFolder, state: LocalState) -> dict[str, str]:
    """Ray's environment, which every job inherits: the path of the jobs' copy of the Ray token (jobs must reach
    their Ray), never a secret's value nor a path to the credentials folder or the state folder."""
    ports = state.components["ray"].ports
    # Jobs' `python` is this environment's interpreter, so `workloads` and its pins are there.
    path = f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        **RAY_LOOPBACK_ENV,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(jobs_ray_token(folder, state)),
        "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
        "PATH": path,
        **{var: str(ports[name]) for name, var in _RAY_PORT_ENV.items()},
    }


def _ray_node_registered(response: httpx.Response) -> bool:
    """The head node has registered its CPUs, so its raylet is up (the dashboard alone is not)."""
    try:
        return "CPU" in response.json()["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
    except (ValueError, KeyError, TypeError):
        return False


# -- MLflow tracking server -----------------------------------------------------------------
def _mlflow_auth(folder: StateFolder) -> LocalServerAuth:
    """Basic-auth app with workspaces, fail-closed, the roster guard; auth DB ``mlflow/auth.db``. The admin
    password and Flask key are generated once, 0600 in the credentials folder, and reach MLflow by env only."""
    return local_server_auth(
        folder.home / "mlflow",
        folder.mlflow_admin_password_file.read_text().strip(),
        folder.mlflow_flask_key_file.read_text().strip(),
    )


def _mlflow_command(folder: StateFolder, state: LocalState) -> list[str]:
    auth = _mlflow_auth(folder)
    auth.write_ini()
    return [
        str(_BIN / "mlflow"),
        "server",
        "--host",
        HOST,
        "--port",
        str(state.port("mlflow", "http")),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder.home / 'mlflow' / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder.home / "mlflow" / "artifacts"),
        "--serve-artifacts",
        *auth.argv,
    ]


def _mlflow_env(folder: StateFolder, _state: LocalState) -> dict[str, str]:
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **_mlflow_auth(folder).env}


# -- control plane --------------------------------------------------------------------------
def _control_plane_command(folder: StateFolder, state: LocalState) -> list[str]:
    """Writes ``control-plane.json`` (``ControlPlaneSettings``) and runs the plane from it."""
    settings = ControlPlaneSettings(
        stack_file=stack_file_for(state.region),
        database_url=folder.database_url,
        backend="ray",
        ray_address=state.ray_dashboard_url,
        mlflow_tracking_uri=state.mlflow_url,
        storage_path=str(folder.home / "storage"),
        capacity_cpus=state.num_cpus,
        capacity_gpus=state.num_gpus,
        capacity_memory=node_memory(),
        credentials_dir=folder.credentials_dir,
        host=HOST,
        mlflow_admin_password_file=folder.mlflow_admin_password_file,
        port=state.port("control_plane", "http"),
        job_logins_dir=jobs_dir(state) / "logins",
    )
    settings.write(folder.settings_file)
    return [sys.executable, "-m", "operators.control_plane", "--settings", str(folder.settings_file)]


def _control_plane_ports(argv: list[str], _env: dict[str, str]) -> dict[str, int]:
    """The port in the settings file the running control plane was started with."""
    try:
        return {"http": ControlPlaneSettings.from_file(_flag_values(argv)["--settings"]).port}
    except (KeyError, ValueError):
        return {}


COMPONENTS: tuple[Component, ...] = (
    Component(
        name="ray",
        ports=_RAY_PORTS,
        command=_ray_command,
        env=_ray_env,
        url=attrgetter("ray_dashboard_url"),
        health_path="/api/cluster_status",
        ready=_ray_node_registered,
        ray_auth=True,
        runs_jobs=True,
        # `ray start --block` and the GCS sit out SIGTERM until a 30 s timeout; Ray keeps no state
        # to lose locally (the control plane keeps the jobs' history), so its group gets 2 s.
        stop_grace=2.0,
        owns=lambda argv: _runs(argv, "ray", "start", "--head"),
        ports_of=_ray_ports,
    ),
    Component(
        name="mlflow",
        ports=("http",),
        command=_mlflow_command,
        env=_mlflow_env,
        url=attrgetter("mlflow_url"),
        health_path="/health",
        owns=lambda argv: _runs(argv, "mlflow", "server", "--backend-store-uri"),
        ports_of=lambda argv, _env: {"http": int(_flag_values(argv).get("--port", "0"))},
    ),
    Component(
        name="control_plane",
        ports=("http",),
        command=_control_plane_command,
        env=lambda folder, _state: {**RAY_LOOPBACK_ENV, **folder.ray_auth_env()},
        url=attrgetter("control_plane_url"),
        health_path="/healthz",
        owns=lambda argv: _runs(argv, "operators.control_plane"),
        ports_of=_control_plane_ports,
    ),
)
