"""Process groups and the instance marker, through psutil.

Every component runs in its own process group (its pid is the group id) with
``TESTBED_INSTANCE=<instance>`` in its environment, which its helpers inherit: stopping the group
stops MLflow's workers and Ray's raylet; the marker finds whatever left the group (Ray's workers).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, Collection

import psutil

MARKER_ENV = "TESTBED_INSTANCE"


def pid_alive(pid: int | None) -> bool:
    """The process exists and is not a zombie."""
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True


def is_component(pid: int | None, owns: Callable[[list[str]], bool], started_at: float | None) -> bool:
    """The process ``pid`` is alive and is the component: its command line is the component's (``owns``) and, where
    recorded, it was created when the component was started (not another process under a reused pid)."""
    if not pid_alive(pid):
        return False
    try:
        process = psutil.Process(pid)
        if not owns(process.cmdline()):
            return False
        return started_at is None or abs(process.create_time() - started_at) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the process group ``pgid``."""
    try:
        os.killpg(pgid, 0)  # cheap: no process at all in the group
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except OSError:  # gone meanwhile
            continue
    return members


def stop_process_group(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL whatever is left."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        if _wait_until(lambda: not pid_alive(pid) and not group_members(pid), wait):
            break
    _reap(pid)


def instance_processes(instance: str, keep_groups: Collection[int] = ()) -> list[int]:
    """Live processes carrying this testbed's marker in their environment (this one excluded),
    except members of the process groups ``keep_groups``."""
    found = []
    for proc in psutil.process_iter(["environ", "status"], ad_value=None):  # None: not ours to read
        environ = proc.info["environ"] or {}
        if (
            environ.get(MARKER_ENV) == instance
            and proc.pid != os.getpid()
            and proc.info["status"] != psutil.STATUS_ZOMBIE
            and _group(proc.pid) not in keep_groups
        ):
            found.append(proc.pid)
    return found


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def sweep_instance(instance: str, keep_groups: Collection[int] = ()) -> int:
    """Stop every process of this instance outside ``keep_groups`` (escaped helpers, orphaned job
    drivers); return how many."""
    procs = []
    for pid in instance_processes(instance, keep_groups):
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    for stop in (psutil.Process.terminate, psutil.Process.kill):
        for proc in procs:
            try:
                stop(proc)  # psutil refuses if the pid was reused meanwhile
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        if _wait_until(lambda: not any(pid_alive(p.pid) for p in procs), 5.0):
            break
    for proc in procs:
        _reap(proc.pid)
    return len(procs)


def _wait_until(done, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process, so that it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
