"""A pid from state.json is verified to be the component (command line and create time) before it is reported or
signalled: a decoy under MLflow's recorded pid is neither shown as MLflow nor stopped."""

from __future__ import annotations

import pytest

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import psutil
from tests.waiting import wait_until

from embedded.state import ComponentState, LocalState, StateFolder
from embedded.supervisor import Supervisor


def _state(tmp_path: Path, pid: int, started_at: float | None) -> tuple[Supervisor, LocalState]:
    folder = StateFolder(tmp_path / "home")
    folder.prepare()
    state = LocalState(instance=secrets.token_hex(6), region="gyeongnam", num_cpus=1)
    state.components["mlflow"] = ComponentState(pid=pid, started_at=started_at, ports={"http": 1})
    return Supervisor(folder, lambda _message: None), state


def _spawn(argv: list[str]) -> subprocess.Popen:
    """Start ``argv`` and wait until the process shows it (on a busy machine the exec comes a moment later)."""
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_until(lambda: psutil.Process(process.pid).cmdline()[-1:] == argv[-1:], 30, "the process's command line")
    return process


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
def test_a_decoy_under_the_recorded_pid_is_not_reported_nor_signalled(tmp_path):
    decoy = _spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        supervisor, state = _state(tmp_path, decoy.pid, psutil.Process(decoy.pid).create_time())
        assert not supervisor.running(state, "mlflow")  # its command line is not MLflow's
        started = time.monotonic()
        assert supervisor.stop(state, "mlflow", timeout=30) is False
        assert time.monotonic() - started < 5 and decoy.poll() is None  # not signalled, not waited on
        assert state.components["mlflow"].pid is None
    finally:
        decoy.kill()
        decoy.wait()


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
def test_the_component_is_known_by_command_line_and_create_time(tmp_path):
    fake = tmp_path / "bin" / "mlflow"  # a process whose command line is MLflow's: `mlflow server --backend-store-uri`
    fake.parent.mkdir()
    os.symlink(sys.executable, fake)
    process = _spawn([str(fake), "-c", "import time; time.sleep(60)", "server", "--backend-store-uri", "x"])
    try:
        created = psutil.Process(process.pid).create_time()
        supervisor, state = _state(tmp_path, process.pid, created + 30)  # the pid reused by a later process
        assert not supervisor.running(state, "mlflow")
        assert supervisor.stop(state, "mlflow", timeout=5) is False and process.poll() is None
        supervisor, state = _state(tmp_path, process.pid, created)
        assert supervisor.running(state, "mlflow")
        assert supervisor.stop(state, "mlflow", timeout=10) is True
        process.wait(10)
        assert process.returncode is not None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
