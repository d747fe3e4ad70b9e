"""A running testbed of a state folder whose ``state.json`` is missing or unreadable.

Its processes are found by their command lines, which name paths under the state folder (Ray's
temp folder, MLflow's store, the control plane's settings file), and by the instance marker in
their environment; each component's group leader gives back its ports. ``up`` adopts what it
finds instead of starting a second testbed beside it; ``down`` stops it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import psutil

from embedded.components import COMPONENTS
from embedded.errors import LocalTestbedError
from embedded.processes import MARKER_ENV
from embedded.state import ComponentState, LocalState, StateFolder
from testbed.settings import ControlPlaneSettings

_REGION_FILE = re.compile(r"Pulumi\.([a-z]+)\.ya?ml$")


@dataclass
class FolderProcess:
    pid: int
    argv: list[str]
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def leader(self) -> bool:
        try:
            return os.getpgid(self.pid) == self.pid
        except OSError:
            return False


def folder_processes(folder: StateFolder) -> list[FolderProcess]:
    """Live processes with the instance marker whose command line names a path in the folder."""
    prefix = str(folder.home).rstrip("/") + "/"
    found = []
    for proc in psutil.process_iter(["cmdline", "environ", "status"], ad_value=None):
        environ, argv = proc.info["environ"] or {}, proc.info["cmdline"] or []
        if (
            MARKER_ENV in environ
            and proc.pid != os.getpid()
            and proc.info["status"] != psutil.STATUS_ZOMBIE
            and any(prefix in arg for arg in argv)
        ):
            found.append(FolderProcess(proc.pid, list(argv), dict(environ)))
    return found


def running_instances(folder: StateFolder) -> set[str]:
    """Instance markers of the testbeds that run from this folder."""
    return {p.environ[MARKER_ENV] for p in folder_processes(folder)}


def adopt(folder: StateFolder, region: str) -> LocalState | None:
    """The state of the testbed running from ``folder`` (None: nothing runs); one-line error if it
    cannot be read back."""
    procs = folder_processes(folder)
    if not procs:
        return None
    instances = {p.environ[MARKER_ENV] for p in procs}
    if len(instances) > 1:
        raise LocalTestbedError(
            f"{len(instances)} testbeds run from {folder.home} and its state.json is unreadable; "
            "stop them with `testbed down`, then `testbed up`"
        )
    state = LocalState(instance=instances.pop(), region=region, num_cpus=os.cpu_count() or 2)
    for component in COMPONENTS:
        leader = next((p for p in procs if p.leader and component.owns(p.argv)), None)
        if leader is None:
            continue
        ports = component.ports_of(leader.argv, leader.environ)
        if set(ports) != set(component.ports) or not all(ports.values()):
            raise LocalTestbedError(
                f"{component.name} (pid {leader.pid}) runs from {folder.home} but its ports cannot "
                "be read back; stop it with `testbed down`, then `testbed up`"
            )
        state.components[component.name] = ComponentState(
            pid=leader.pid, ports=ports, log=str(folder.log_file(component.name))
        )
        _take_details(state, leader.argv)
    return state


def _take_details(state: LocalState, argv: list[str]) -> None:
    """The region (from the stack file a control plane runs) and Ray's CPU count."""
    for arg in argv:
        if arg.startswith("--num-cpus="):
            state.num_cpus = int(arg.partition("=")[2])
        if arg.startswith("--num-gpus="):
            state.num_gpus = int(arg.partition("=")[2])
        if arg.endswith("control-plane.json"):
            try:
                match = _REGION_FILE.search(ControlPlaneSettings.from_file(arg).stack_file.name)
            except ValueError:
                match = None
            if match:
                state.region = match.group(1)
