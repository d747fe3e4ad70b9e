"""The embedded testbed on one machine: a Ray head, an MLflow server and the control plane.

Everything binds to 127.0.0.1 and lives under one state folder (``$TESTBED_HOME``).

    components   the table: each component's ports, command line, environment, URL, health check
    supervisor   spawn in its own process group, wait healthy (one retry on fresh ports), stop
    processes    process groups and the instance marker (psutil)
    state        the state folder, ``state.json``, credentials, what ``status`` reports
    lifecycle    ``LocalTestbed``: up, status, down, tokens
    ports        loopback ports
"""

from __future__ import annotations

from embedded.components import COMPONENTS, RAY_LOOPBACK_ENV, Component
from embedded.errors import ComponentExited, LocalTestbedError
from embedded.lifecycle import LocalTestbed
from embedded.ports import HOST, allocate_ports, free_port
from embedded.processes import MARKER_ENV, instance_processes, pid_alive, stop_process_group, sweep_instance
from embedded.state import ComponentStatus, LocalState, StateFolder, TestbedStatus

__all__ = [
    "COMPONENTS",
    "HOST",
    "MARKER_ENV",
    "RAY_LOOPBACK_ENV",
    "Component",
    "ComponentExited",
    "ComponentStatus",
    "LocalState",
    "LocalTestbed",
    "LocalTestbedError",
    "StateFolder",
    "TestbedStatus",
    "allocate_ports",
    "free_port",
    "instance_processes",
    "pid_alive",
    "stop_process_group",
    "sweep_instance",
]
