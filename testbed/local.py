"""The embedded testbed on one machine: a Ray head, an MLflow server and the control plane.

Everything binds to 127.0.0.1 and lives under one state folder (``$TESTBED_HOME``)::

    state.json            ports, pids, URLs          control-plane.db   jobs and token hashes
    credentials/*.token   tenant tokens (0600)       mlflow/            SQLite store + artifacts
    ray/                  Ray's temp folder          logs/*.log         each component's output
    storage/              job outputs, checkpoints

Each component runs in its own process group with a marker variable in its environment, so
``down`` stops its helpers (MLflow's workers, Ray's raylet and workers) and nothing else.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
from pydantic import BaseModel, Field, computed_field

from testbed.client import testbed_home
from testbed.config import load_region, stack_file_for
from testbed.secrets import write_secret
from testbed.settings import ControlPlaneSettings

MARKER_ENV = "TESTBED_INSTANCE"
HOST = "127.0.0.1"
COMPONENTS = ("ray", "mlflow", "control_plane")
_MAX_UNIX_SOCKET_PATH = 107
# Ray turns --node-ip-address=127.0.0.1 into the machine's routable address unless it runs in
# its single-machine mode; this keeps every Ray process (GCS, raylet, dashboard) on loopback.
RAY_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}  # AF_UNIX limit; Ray puts sockets under its temp folder


class LocalTestbedError(RuntimeError):
    """A local testbed step failed; the message says which and where its log is."""


class ComponentExited(LocalTestbedError):
    """A component's process ended before it became healthy."""


def _last_error_line(log_path: str) -> str:
    """The last line of a log that looks like an error, to name the cause in one line."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()[-200:]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if any(word in line for word in ("Error", "Exception", "error:", "FATAL", "failed")):
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "empty log"


class ComponentState(BaseModel):
    pid: int | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    log: str = ""


class LocalState(BaseModel):
    """What ``up`` recorded in ``state.json``."""

    instance: str
    region: str
    num_cpus: int
    components: dict[str, ComponentState] = Field(default_factory=dict)
    started_at: float | None = None

    def port(self, component: str, name: str) -> int:
        return self.components[component].ports[name]

    @property
    def control_plane_url(self) -> str:
        return f"http://{HOST}:{self.port('control_plane', 'http')}"

    @computed_field  # recorded in state.json for clients (``TestbedClient.from_env``)
    @property
    def client_url(self) -> str | None:
        return self.control_plane_url if "control_plane" in self.components else None

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.port('mlflow', 'http')}"

    @property
    def ray_dashboard_url(self) -> str:
        return f"http://{HOST}:{self.port('ray', 'dashboard')}"

    @property
    def ray_address(self) -> str:
        return f"{HOST}:{self.port('ray', 'gcs')}"


class ComponentStatus(BaseModel):
    name: str
    running: bool
    healthy: bool
    pid: int | None
    url: str | None
    log: str


class TestbedStatus(BaseModel):
    __test__ = False

    home: str
    region: str | None
    running: bool
    healthy: bool
    components: list[ComponentStatus]
    control_plane_url: str | None = None
    mlflow_url: str | None = None
    ray_dashboard_url: str | None = None
    ray_address: str | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _http_ok(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, timeout=timeout, headers=headers).status_code == 200
    except httpx.HTTPError:
        return False


class LocalTestbed:
    """Start, inspect and stop the embedded testbed of one state folder."""

    __test__ = False

    def __init__(self, home: Path | str | None = None, progress: Callable[[str], None] | None = None):
        self.home = Path(home).expanduser().absolute() if home else testbed_home()
        self.progress = progress or (lambda _msg: None)

    # -- paths and state ------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.home / 'control-plane.db'}"

    def credentials_dir(self) -> Path:
        return self.home / "credentials"

    @property
    def ray_token_file(self) -> Path:
        return self.credentials_dir() / "ray.token"

    def ray_auth_env(self) -> dict[str, str]:
        """Ray token auth for this testbed: only holders of its token reach Ray directly.

        Tenants go through the control plane; the Ray token is the local operator's.
        """
        if not self.ray_token_file.exists():
            write_secret(self.ray_token_file, secrets.token_hex(32))
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.ray_token_file)}

    def ray_auth_headers(self) -> dict[str, str]:
        try:
            return {"Authorization": f"Bearer {self.ray_token_file.read_text().strip()}"}
        except OSError:
            return {}

    def load_state(self) -> LocalState | None:
        try:
            return LocalState.model_validate_json(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def _save_state(self, state: LocalState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.model_dump_json(indent=2))
        tmp.replace(self.state_file)

    # -- up -------------------------------------------------------------------------------
    def up(self, region: str = "gyeongnam", num_cpus: int | None = None, timeout: float = 180.0) -> TestbedStatus:
        """Start whatever is not running and healthy; return when all three are healthy."""
        load_region(region)  # fail fast on a bad stack file
        self.home.mkdir(parents=True, exist_ok=True)
        state = self.load_state()
        if state is not None and state.region != region and self._any_running(state):
            raise LocalTestbedError(
                f"the testbed in {self.home} runs region {state.region!r}; `testbed down` first to switch to {region!r}"
            )
        if state is None or state.region != region:
            state = LocalState(instance=secrets.token_hex(6), region=region, num_cpus=num_cpus or os.cpu_count() or 2)
        elif num_cpus and num_cpus != state.num_cpus and not self._component_running(state, "ray"):
            state.num_cpus = num_cpus
        ray_tmp = self.home / "ray"
        if len(str(ray_tmp)) + 60 > _MAX_UNIX_SOCKET_PATH:
            raise LocalTestbedError(
                f"state folder {self.home} is too long for Ray's socket paths (at most "
                f"{_MAX_UNIX_SOCKET_PATH - 64} characters); set TESTBED_HOME to a shorter path"
            )
        for sub in ("logs", "credentials", "mlflow/artifacts", "storage", "ray"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.credentials_dir(), 0o700)
        started = time.monotonic()
        for name, starter in (("ray", self._start_ray), ("mlflow", self._start_mlflow), ("control_plane", self._start_control_plane)):
            if self._component_healthy(state, name):
                self.progress(f"{name}: already running")
                continue
            self._start_component(state, name, starter, deadline=started + timeout)
            self.progress(f"{name}: healthy after {time.monotonic() - started:.1f}s")
        if state.started_at is None:
            state.started_at = time.time()
        self._save_state(state)
        return self.status()

    def _start_component(self, state: LocalState, name: str, starter: Callable[[LocalState], None], deadline: float) -> None:
        """Start one component and wait for health; one retry on fresh ports if it dies starting."""
        for attempt in (1, 2):
            self._stop_component(state, name)
            self.progress(f"{name}: starting" + (" again on fresh ports" if attempt == 2 else ""))
            starter(state)
            self._save_state(state)
            try:
                self._wait_healthy(state, name, deadline=deadline)
                return
            except ComponentExited:
                if attempt == 2:
                    raise
                self._stop_component(state, name)
                state.components[name].ports = {}  # a stale or taken port is the usual cause

    def _reuse_or_new_port(self, state: LocalState, component: str, name: str) -> int:
        port = state.components.get(component, ComponentState()).ports.get(name)
        if port and _port_free(port):
            return port
        return free_port()

    def _spawn(self, state: LocalState, component: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log_path = self.home / "logs" / f"{component}.log"
        full_env = {**os.environ, **(env or {}), MARKER_ENV: state.instance}
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=full_env, cwd=self.home, start_new_session=True,
            )
        state.components[component].pid = process.pid
        state.components[component].log = str(log_path)

    def _start_ray(self, state: LocalState) -> None:
        ports = {name: self._reuse_or_new_port(state, "ray", name) for name in (
            "gcs", "dashboard", "client", "agent_listen", "agent_grpc", "metrics", "runtime_env", "node_manager", "object_manager")}
        state.components["ray"] = ComponentState(ports=ports)
        ray = str(Path(sys.executable).parent / "ray")
        argv = [
            ray, "start", "--head", "--block", "--disable-usage-stats",
            f"--node-ip-address={HOST}", f"--port={ports['gcs']}",
            "--include-dashboard=true", f"--dashboard-host={HOST}", f"--dashboard-port={ports['dashboard']}",
            f"--ray-client-server-port={ports['client']}",
            f"--dashboard-agent-listen-port={ports['agent_listen']}", f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
            f"--metrics-export-port={ports['metrics']}", f"--runtime-env-agent-port={ports['runtime_env']}",
            f"--node-manager-port={ports['node_manager']}", f"--object-manager-port={ports['object_manager']}",
            f"--num-cpus={state.num_cpus}", "--num-gpus=0", f"--object-store-memory={512 * 2**20}",
            f"--temp-dir={self.home / 'ray'}",
        ]
        # Jobs' `python` is this environment's interpreter, so `workloads` and its pins are there.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**RAY_LOOPBACK_ENV, **self.ray_auth_env(), "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "RAY_ADDRESS": "", "PATH": path}
        self._spawn(state, "ray", argv, env)

    def _start_mlflow(self, state: LocalState) -> None:
        port = self._reuse_or_new_port(state, "mlflow", "http")
        state.components["mlflow"] = ComponentState(ports={"http": port})
        mlflow = str(Path(sys.executable).parent / "mlflow")
        argv = [
            mlflow, "server", "--host", HOST, "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}",
            "--artifacts-destination", str(self.home / "mlflow" / "artifacts"),
            "--serve-artifacts",
        ]
        self._spawn(state, "mlflow", argv, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})

    def _start_control_plane(self, state: LocalState) -> None:
        port = self._reuse_or_new_port(state, "control_plane", "http")
        state.components["control_plane"] = ComponentState(ports={"http": port})
        settings = ControlPlaneSettings(
            stack_file=stack_file_for(state.region), database_url=self.database_url, backend="ray",
            ray_address=state.ray_dashboard_url, mlflow_tracking_uri=state.mlflow_url,
            storage_path=str(self.home / "storage"), capacity_cpus=state.num_cpus, capacity_gpus=0,
            credentials_dir=self.credentials_dir(), host=HOST, port=port,
        )
        settings_path = self.home / "control-plane.json"
        settings.write(settings_path)
        argv = [sys.executable, "-m", "operators.control_plane", "--settings", str(settings_path)]
        self._spawn(state, "control_plane", argv, {**RAY_LOOPBACK_ENV, **self.ray_auth_env()})

    def _health_url(self, state: LocalState, name: str) -> str:
        if name == "ray":
            return f"{state.ray_dashboard_url}/api/cluster_status"
        if name == "mlflow":
            return f"{state.mlflow_url}/health"
        return f"{state.control_plane_url}/healthz"

    def _component_running(self, state: LocalState, name: str) -> bool:
        component = state.components.get(name)
        return component is not None and pid_alive(component.pid)

    def _healthy(self, state: LocalState, name: str) -> bool:
        if name == "ray":
            return self._ray_node_ready(state)
        return _http_ok(self._health_url(state, name))

    def _ray_node_ready(self, state: LocalState) -> bool:
        """The dashboard answers and the head node has registered its CPUs (raylet is up)."""
        try:
            response = httpx.get(self._health_url(state, "ray"), headers=self.ray_auth_headers(), timeout=2.0)
            usage = response.json()["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
            return response.status_code == 200 and "CPU" in usage
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return False

    def _component_healthy(self, state: LocalState, name: str) -> bool:
        return self._component_running(state, name) and self._healthy(state, name)

    def _any_running(self, state: LocalState) -> bool:
        return any(self._component_running(state, name) for name in COMPONENTS)

    def _wait_healthy(self, state: LocalState, name: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not self._component_running(state, name):
                log = state.components[name].log
                raise ComponentExited(f"{name} exited while starting: {_last_error_line(log)} (log: {log})")
            if self._healthy(state, name):
                return
            time.sleep(0.25)
        raise LocalTestbedError(f"{name} did not become healthy in time; see {state.components[name].log}")

    # -- tokens ---------------------------------------------------------------------------
    def token(self, subject: str) -> str:
        """A tenant's (or the operator's) token, as the control plane wrote it at first start."""
        path = self.credentials_dir() / f"{subject}.token"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise LocalTestbedError(f"no token for {subject!r} in {self.credentials_dir()}; run `testbed up` first") from None

    def save_token(self, subject: str, token: str) -> None:
        write_secret(self.credentials_dir() / f"{subject}.token", token)

    # -- status ---------------------------------------------------------------------------
    def status(self) -> TestbedStatus:
        state = self.load_state()
        if state is None:
            return TestbedStatus(home=str(self.home), region=None, running=False, healthy=False, components=[])
        urls = {
            "ray": state.ray_dashboard_url if "ray" in state.components else None,
            "mlflow": state.mlflow_url if "mlflow" in state.components else None,
            "control_plane": state.control_plane_url if "control_plane" in state.components else None,
        }
        components = []
        for name in COMPONENTS:
            component = state.components.get(name, ComponentState())
            running = self._component_running(state, name)
            components.append(ComponentStatus(
                name=name, running=running, healthy=running and self._healthy(state, name),
                pid=component.pid if running else None, url=urls[name], log=component.log,
            ))
        complete = all(name in state.components for name in COMPONENTS)
        return TestbedStatus(
            home=str(self.home),
            region=state.region,
            running=any(c.running for c in components),
            healthy=all(c.healthy for c in components),
            components=components,
            control_plane_url=urls["control_plane"],
            mlflow_url=urls["mlflow"],
            ray_dashboard_url=urls["ray"],
            ray_address=state.ray_address if complete else None,
        )

    # -- down -----------------------------------------------------------------------------
    def down(self, timeout: float = 30.0) -> list[str]:
        """Stop every component and its helpers; return what was stopped. Data stays."""
        state = self.load_state()
        if state is None:
            return []
        stopped = []
        for name in reversed(COMPONENTS):  # control plane first: it finishes its sync round
            if self._stop_component(state, name, timeout):
                stopped.append(name)
                self.progress(f"{name}: stopped")
        leftovers = sweep_instance(state.instance)
        if leftovers:
            self.progress(f"stopped {leftovers} leftover helper process(es)")
        self._save_state(state)
        return stopped

    def _stop_component(self, state: LocalState, name: str, timeout: float = 30.0) -> bool:
        component = state.components.get(name)
        if component is None or not component.pid:
            return False
        was_running = pid_alive(component.pid)
        stop_process_group(component.pid, timeout)
        component.pid = None
        return was_running


def stop_process_group(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL whatever is left."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid) and not _group_alive(pid):
                _reap(pid)
                return
            time.sleep(0.1)
    _reap(pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return _group_members(pgid) != []
    except ProcessLookupError:
        return False


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def instance_processes(instance: str) -> list[int]:
    """Live processes carrying this testbed's marker in their environment."""
    needle = f"{MARKER_ENV}={instance}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and pid_alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def sweep_instance(instance: str) -> int:
    """Kill any process of this instance that escaped its process group (e.g. Ray workers)."""
    pids = instance_processes(instance)
    found = len(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.1)
        pids = [p for p in pids if pid_alive(p)]
        if not pids:
            break
    for pid in instance_processes(instance):
        _reap(pid)
    return found
