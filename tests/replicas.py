"""Control-plane replicas as real processes, for tests and benchmarks.

Each replica is ``python -m operators.control_plane --settings FILE`` (or another command line
serving the same app) on 127.0.0.1, in its own process group, its output in ``<name>.log``.
``ReplicaSet`` starts them together (so their start-up races: migrations, tokens, the lease),
waits until all answer ``/healthz``, and stops whatever is left on exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import yaml

from testbed.config import stack_file_for
from tests.waiting import wait_until
from testbed.net import HOST, free_port
from testbed.settings import ControlPlaneSettings

REPO = Path(__file__).resolve().parents[1]
CONTROL_PLANE = [sys.executable, "-m", "tests.noop_doubles"]  # the control plane, with the no-op test aids


def noop_settings(home: Path, stack: Path, database_url: str, **overrides: Any) -> ControlPlaneSettings:
    """A control plane's settings for tests and benchmarks: ``stack`` on ``database_url``, the no-op backend, an MLflow
    address that answers nothing, its storage and credentials under ``home``; ``overrides``: any setting, these
    included."""
    defaults: dict[str, Any] = {
        "backend": "noop",
        "mlflow_tracking_uri": "http://127.0.0.1:1",
        "storage_path": str(home / "storage"),
        "credentials_dir": home / "credentials",
    }
    return ControlPlaneSettings(stack_file=stack, database_url=database_url, **{**defaults, **overrides})


def issued_token(home: Path, subject: str) -> str:
    """The token a control plane with :func:`noop_settings` (credentials under ``home``) wrote for ``subject``."""
    return (home / "credentials" / f"{subject}.token").read_text().strip()


def stack_with_tenants(
    out: Path, count: int, quota: dict[str, Any], region: str = "gyeongnam"
) -> tuple[Path, list[str]]:
    """A copy of the region's stack file with ``count`` sample tenants of the given quota."""
    document = yaml.safe_load(stack_file_for(region).read_text())
    template = document["config"]["testbed:tenants"][0]
    ids = [f"replica-tenant-{i:03d}" for i in range(count)]
    document["config"]["testbed:tenants"] = [
        {**template, "id": tenant, "name": f"Replica Tenant {i} (sample)", "quota": {**template["quota"], **quota}}
        for i, tenant in enumerate(ids)
    ]
    budget = document["config"].get("testbed:budget")
    if budget is not None and template["grant"].get("krw"):  # the budget covers every copy of the grant
        budget["funding"] = {
            source: max(amount, template["grant"]["krw"] * count) for source, amount in budget["funding"].items()
        }
    path = out / f"Pulumi.{region}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path, ids


@dataclass
class Replica:
    """One control-plane process."""

    name: str
    settings: ControlPlaneSettings
    log: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.settings.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def health(self) -> dict[str, Any] | None:
        """``/healthz``, or None when it does not answer."""
        try:
            response = httpx.get(self.url + "/healthz", timeout=2.0)
            return response.json() if response.status_code == 200 else None
        except httpx.HTTPError:
            return None

    def start(self, command: list[str], env: dict[str, str]) -> None:
        settings_file = self.log.with_suffix(".json")
        self.settings.write(settings_file)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [*command, "--settings", str(settings_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 20.0) -> None:
        """Signal its process group (SIGKILL: a crash) and reap it; SIGKILL if SIGTERM is not enough."""
        if self.process is None or self.process.poll() is not None:
            return  # never started, or already ended and reaped: its pid may belong to someone else now
        try:
            os.killpg(self.pid, sig)
            self.process.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ReplicaSet:
    """Replicas of one control plane (same settings, own ports), started together."""

    base: ControlPlaneSettings
    folder: Path
    count: int = 2
    command: list[str] = field(default_factory=lambda: list(CONTROL_PLANE))
    env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)

    def __enter__(self) -> ReplicaSet:
        environment = self._environment()
        for i in range(self.count):
            settings = self.base.model_copy(update={"host": HOST, "port": free_port()})
            self.replicas.append(Replica(f"replica-{i}", settings, self.folder / f"replica-{i}.log"))
        try:
            for replica in self.replicas:
                replica.start(self.command, environment)
            for replica in self.replicas:
                wait_until(
                    lambda r=replica: r.health() or (not r.alive and self._died(r)), 120, f"{replica.name} healthy"
                )
        except BaseException:
            self.__exit__()
            raise
        return self

    @staticmethod
    def _died(replica: Replica) -> None:
        raise RuntimeError(f"{replica.name} exited while starting:\n{replica.tail()}")

    def __exit__(self, *_exc: object) -> None:
        for replica in self.replicas:
            replica.kill(signal.SIGTERM)

    def restart(self, replica: Replica) -> None:
        """Start a stopped (or killed) replica again, on its port."""
        replica.kill(signal.SIGTERM)
        replica.start(self.command, self._environment())

    def _environment(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.env,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        }

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def reconciler(self, timeout: float = 30.0) -> Replica:
        """The replica that holds the reconciler lease and has completed a sync round under it."""
        return wait_until(
            lambda: next((r for r in self.live() if (r.health() or {}).get("reconciler")), None),
            timeout,
            "a reconciling replica",
            every=0.05,
        )


@dataclass
class RayHead:
    """A local Ray head: its Jobs API URL and the environment a client of it needs (token auth, loopback)."""

    dashboard_url: str
    env: dict[str, str]


@contextmanager
def ray_head(home: Path, num_cpus: int = 2) -> Iterator[RayHead]:
    """Start only the local testbed's Ray head (its component row: flags, ports, environment) and stop it,
    its whole process group and any escaped worker, on exit. ``home`` must be a short path."""
    from embedded import COMPONENTS, RAY_LOOPBACK_ENV, LocalState, StateFolder, sweep_instance
    from embedded.supervisor import Supervisor

    folder = StateFolder(home)
    folder.prepare()
    state = LocalState(instance=f"replicas-{uuid.uuid4().hex[:8]}", region="gyeongnam", num_cpus=num_cpus)
    supervisor = Supervisor(folder, progress=lambda _message: None)
    component = next(c for c in COMPONENTS if c.name == "ray")
    try:
        supervisor.start(state, component, deadline=time.monotonic() + 120)
        yield RayHead(dashboard_url=state.ray_dashboard_url, env={**RAY_LOOPBACK_ENV, **folder.ray_auth_env()})
    finally:
        supervisor.stop(state, "ray")
        sweep_instance(state.instance)
