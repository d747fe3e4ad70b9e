"""Runs the components of one state folder: spawn, wait until healthy, stop.

A component runs in its own process group with the instance marker in its environment
(``processes``), its output appended to ``logs/<name>.log``.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from embedded.components import COMPONENTS, Component, job_environ, jobs_dir
from embedded.errors import ComponentExited, LocalTestbedError
from embedded.jobs_user import check_reach, hand_over, jobs_user
from embedded.ports import allocate_ports
from embedded.processes import MARKER_ENV, create_time, is_component, pid_alive, stop_process_group
from embedded.state import ComponentState, LocalState, StateFolder


COMPONENTS_BY_NAME = {component.name: component for component in COMPONENTS}


class Supervisor:
    def __init__(self, folder: StateFolder, progress: Callable[[str], None]):
        self.folder = folder
        self.progress = progress

    def running(self, state: LocalState, name: str) -> bool:
        """The recorded pid is alive and is the component (command line, create time), never a decoy under its pid."""
        component = state.components.get(name)
        if component is None:
            return False
        owns = COMPONENTS_BY_NAME[name].owns if name in COMPONENTS_BY_NAME else (lambda _argv: True)
        return is_component(component.pid, owns, component.started_at)

    def healthy(self, state: LocalState, component: Component) -> bool:
        return self.running(state, component.name) and component.healthy(self.folder, state)

    def start(self, state: LocalState, component: Component, deadline: float) -> None:
        """Start one component and wait until healthy; one retry on fresh ports if it dies starting."""
        name = component.name
        for attempt in (1, 2):
            self.stop(state, name, component.stop_grace)
            self.progress(f"{name}: starting" + (" again on fresh ports" if attempt == 2 else ""))
            previous = state.components[name].ports if attempt == 1 and name in state.components else {}
            state.components[name] = ComponentState(ports=allocate_ports(component.ports, previous))
            self._spawn(state, component)
            self.folder.save(state)  # the pid is on record before anything can go wrong
            try:
                self._wait_healthy(state, component, deadline)
                self.folder.tighten()  # Ray's 0777 session folders, the log just opened
                return
            except ComponentExited:  # a stale or taken port is the usual cause
                self.stop(state, name, component.stop_grace)  # its helpers too
                self.folder.save(state)
                if attempt == 2:
                    raise

    def stop(self, state: LocalState, name: str, timeout: float = 30.0) -> bool:
        """Stop the component's process group (SIGKILL after ``timeout`` s); whether it was running."""
        component = state.components.get(name)
        if component is None or not component.pid:
            return False
        was_running = self.running(state, name)
        # its group (helpers that outlived it included); a live process that is not the component, under a reused
        # pid, is never signalled (a dead leader's pid is not reused while its group lives)
        if was_running or not pid_alive(component.pid):
            stop_process_group(component.pid, timeout)
        component.pid = None
        return was_running

    def _spawn(self, state: LocalState, component: Component) -> None:
        argv = component.command(self.folder, state)
        # What tenants' jobs inherit names no platform path; the instance marker is an opaque id.
        inherited = job_environ(os.environ) if component.runs_jobs else os.environ
        env = {**inherited, **component.env(self.folder, state), MARKER_ENV: state.instance}
        # Run as root, jobs get a user of their own, owner of where they work only (embedded.jobs_user).
        user = jobs_user() if component.runs_jobs else None
        as_user = {}
        if user is not None:
            jobs = jobs_dir(state)
            for folder in (jobs / "home", jobs / "logins"):  # Ray's HOME; the jobs' MLflow logins
                folder.mkdir(mode=0o700, exist_ok=True)
            ray, storage = self.folder.home / "ray", self.folder.home / "storage"
            hand_over(user, jobs / "home", jobs / "logins", jobs / "ray.token", ray, storage)
            check_reach(user, ray)
            as_user = {"user": user.uid, "group": user.gid, "extra_groups": []}
            env["HOME"] = str(jobs / "home")
        log_path = self.folder.log_file(component.name)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "ab") as log:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=jobs_dir(state) if component.runs_jobs else self.folder.home,
                start_new_session=True,
                umask=0o077,  # what the platform (and, under Ray, every job) writes is the owner's only
                **as_user,  # type: ignore[arg-type]
            )
        state.components[component.name].pid = process.pid
        state.components[component.name].started_at = create_time(process.pid)
        state.components[component.name].log = str(log_path)

    def _wait_healthy(self, state: LocalState, component: Component, deadline: float) -> None:
        log = state.components[component.name].log
        while time.monotonic() < deadline:
            if not self.running(state, component.name):
                raise ComponentExited(f"{component.name} exited while starting: {_last_error_line(log)} (log: {log})")
            if component.healthy(self.folder, state):
                return
            time.sleep(0.25)
        raise LocalTestbedError(f"{component.name} did not become healthy in time; see {log}")


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
