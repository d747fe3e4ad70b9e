"""``LocalTestbed``: up, status, down and tokens for the embedded testbed of one state folder."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Callable

from testbed.local_address import testbed_home
from testbed.config import load_region
from embedded.adopt import adopt, running_instances
from embedded.components import COMPONENTS, Component
from embedded.errors import LocalTestbedError
from embedded.processes import sweep_instance
from embedded.state import ComponentState, ComponentStatus, LocalState, StateFolder, TestbedStatus
from embedded.supervisor import Supervisor
from testbed.settings import ControlPlaneSettings


class LocalTestbed:
    """Start, inspect and stop the embedded testbed of one state folder."""

    __test__ = False

    def __init__(self, home: Path | str | None = None, progress: Callable[[str], None] | None = None):
        self.home = Path(home).expanduser().absolute() if home else testbed_home()
        self.progress = progress or (lambda _msg: None)
        self.folder = StateFolder(self.home)
        self.supervisor = Supervisor(self.folder, self.progress)

    # -- state and credentials ------------------------------------------------------------
    def load_state(self) -> LocalState | None:
        return self.folder.load()

    def credentials_dir(self) -> Path:
        return self.folder.credentials_dir

    @property
    def ray_token_file(self) -> Path:
        return self.folder.ray_token_file

    def ray_auth_env(self) -> dict[str, str]:
        """Environment that lets a Ray client of this process reach this testbed's Ray."""
        return self.folder.ray_auth_env()

    def token(self, subject: str) -> str:
        """A tenant's (or the operator's) token, as the control plane wrote it at first start."""
        return self.folder.token(subject)

    # -- up -------------------------------------------------------------------------------
    def up(
        self,
        region: str = "gyeongnam",
        num_cpus: int | None = None,
        timeout: float = 180.0,
        num_gpus: int | None = None,
    ) -> TestbedStatus:
        """Start whatever is not running and healthy; return when all three are healthy.

        ``num_gpus``: logical GPUs Ray offers on the head (no CUDA behind them; templates then train on the CPU)."""
        load_region(region)  # fail fast on a bad stack file
        self.home.mkdir(parents=True, exist_ok=True)
        state = self.folder.load() or self._adopt(region)
        if state is not None and state.region != region and self._any_running(state):
            raise LocalTestbedError(
                f"the testbed in {self.home} runs region {state.region!r}; `testbed down` first to switch to {region!r}"
            )
        if state is None or state.region != region:
            state = LocalState(
                instance=secrets.token_hex(6),
                region=region,
                num_cpus=num_cpus or os.cpu_count() or 2,
                num_gpus=num_gpus or 0,
            )
        elif not self.supervisor.running(state, "ray"):
            if num_cpus and num_cpus != state.num_cpus:
                state.num_cpus = num_cpus
            if num_gpus is not None:
                state.num_gpus = num_gpus
        elif num_gpus is not None and num_gpus != state.num_gpus:
            raise LocalTestbedError(
                f"the testbed in {self.home} runs Ray with {state.num_gpus} logical GPUs; "
                f"`testbed down` first to start it with {num_gpus}"
            )
        if "control_plane" not in state.components:
            self._keep_control_plane_port(state)
        self.folder.prepare()
        started = time.monotonic()
        for component in COMPONENTS:
            if self.supervisor.healthy(state, component):
                self.progress(f"{component.name}: already running")
                continue
            if component.runs_jobs:
                self._sweep_orphans(state, component)
            self.supervisor.start(state, component, deadline=started + timeout)
            self.progress(f"{component.name}: healthy after {time.monotonic() - started:.1f}s")
        if state.started_at is None:
            state.started_at = time.time()
        self.folder.save(state)
        return self.status()

    def _any_running(self, state: LocalState) -> bool:
        return any(self.supervisor.running(state, c.name) for c in COMPONENTS)

    def _adopt(self, region: str) -> LocalState | None:
        """A testbed still running from this folder though state.json is lost: adopted, never doubled."""
        state = adopt(self.folder, region)
        if state is not None:
            self.progress(
                f"state.json was missing or unreadable: adopted the running testbed "
                f"({', '.join(state.components) or 'no component'} of instance {state.instance})"
            )
            self.folder.save(state)
        return state

    def _keep_control_plane_port(self, state: LocalState) -> None:
        """A fresh state starts the control plane on the port its settings file last recorded, if free."""
        try:
            port = ControlPlaneSettings.from_file(self.folder.settings_file).port
        except ValueError:
            return
        state.components["control_plane"] = ComponentState(ports={"http": port})

    def _sweep_orphans(self, state: LocalState, component: Component) -> None:
        """Before Ray starts again: stop job drivers of this instance that outlived the last Ray."""
        self.supervisor.stop(state, component.name, component.stop_grace)
        running = {c.pid for name, c in state.components.items() if c.pid and self.supervisor.running(state, name)}
        orphans = sweep_instance(state.instance, keep_groups=running)
        if orphans:
            self.progress(f"stopped {orphans} orphaned job process(es) left by a Ray that had stopped")

    # -- status ---------------------------------------------------------------------------
    def status(self) -> TestbedStatus:
        state = self.folder.load()
        if state is None:
            return TestbedStatus(home=str(self.home), region=None, running=False, healthy=False, components=[])
        urls = {c.name: c.url(state) if c.name in state.components else None for c in COMPONENTS}
        components = []
        for component in COMPONENTS:
            recorded = state.components.get(component.name, ComponentState())
            running = self.supervisor.running(state, component.name)
            components.append(
                ComponentStatus(
                    name=component.name,
                    running=running,
                    healthy=running and component.healthy(self.folder, state),
                    pid=recorded.pid if running else None,
                    url=urls[component.name],
                    log=recorded.log,
                )
            )
        complete = all(c.name in state.components for c in COMPONENTS)
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
        state = self.folder.load()
        if state is None:  # state.json lost: stop whatever still runs from this folder
            instances = running_instances(self.folder)
            for instance in instances:
                self.progress(f"stopped {sweep_instance(instance)} process(es) of instance {instance} (no state.json)")
            return [f"instance {i}" for i in sorted(instances)]
        stopped = []
        for component in reversed(COMPONENTS):  # control plane first: it finishes its sync round
            if self.supervisor.stop(state, component.name, min(timeout, component.stop_grace)):
                stopped.append(component.name)
                self.progress(f"{component.name}: stopped")
        leftovers = sweep_instance(state.instance)
        if leftovers:
            self.progress(f"stopped {leftovers} leftover helper process(es)")
        self.folder.save(state)
        return stopped
