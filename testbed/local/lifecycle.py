"""``LocalTestbed``: up, status, down and tokens for the embedded testbed of one state folder."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Callable

from testbed.client import testbed_home
from testbed.config import load_region
from testbed.local.components import COMPONENTS
from testbed.local.errors import LocalTestbedError
from testbed.local.processes import sweep_instance
from testbed.local.state import ComponentState, ComponentStatus, LocalState, StateFolder, TestbedStatus
from testbed.local.supervisor import Supervisor


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
    def up(self, region: str = "gyeongnam", num_cpus: int | None = None, timeout: float = 180.0) -> TestbedStatus:
        """Start whatever is not running and healthy; return when all three are healthy."""
        load_region(region)  # fail fast on a bad stack file
        self.home.mkdir(parents=True, exist_ok=True)
        state = self.folder.load()
        if state is not None and state.region != region and self._any_running(state):
            raise LocalTestbedError(
                f"the testbed in {self.home} runs region {state.region!r}; `testbed down` first to switch to {region!r}"
            )
        if state is None or state.region != region:
            state = LocalState(instance=secrets.token_hex(6), region=region, num_cpus=num_cpus or os.cpu_count() or 2)
        elif num_cpus and num_cpus != state.num_cpus and not self.supervisor.running(state, "ray"):
            state.num_cpus = num_cpus
        self.folder.prepare()
        started = time.monotonic()
        for component in COMPONENTS:
            if self.supervisor.healthy(state, component):
                self.progress(f"{component.name}: already running")
                continue
            self.supervisor.start(state, component, deadline=started + timeout)
            self.progress(f"{component.name}: healthy after {time.monotonic() - started:.1f}s")
        if state.started_at is None:
            state.started_at = time.time()
        self.folder.save(state)
        return self.status()

    def _any_running(self, state: LocalState) -> bool:
        return any(self.supervisor.running(state, c.name) for c in COMPONENTS)

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
            components.append(ComponentStatus(
                name=component.name, running=running, healthy=running and component.healthy(self.folder, state),
                pid=recorded.pid if running else None, url=urls[component.name], log=recorded.log,
            ))
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
        if state is None:
            return []
        stopped = []
        for component in reversed(COMPONENTS):  # control plane first: it finishes its sync round
            if self.supervisor.stop(state, component.name, timeout):
                stopped.append(component.name)
                self.progress(f"{component.name}: stopped")
        leftovers = sweep_instance(state.instance)
        if leftovers:
            self.progress(f"stopped {leftovers} leftover helper process(es)")
        self.folder.save(state)
        return stopped
