"""Shared fixtures: a real local testbed (Ray + MLflow + control plane) for the whole session,
and a control plane with the no-op backend over real HTTP for fast API tests.

``local_testbed`` attributes: ``home``, ``control_plane_url``, ``mlflow_url``,
``ray_dashboard_url``, ``ray_address``, ``stack`` (gyeongnam), ``tokens`` (tenant id -> token),
``operator_token``, ``client(tenant)``, ``operator_client()``, ``restart_control_plane(crash)``,
``instance`` (marker of its processes).
"""

from __future__ import annotations

import os
import sys
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from tests import postgres
from tests.stack_files import TEST_STACK_DIR

from testbed.client import TestbedClient
from testbed.config import StackConfig, load_region, stack_file_for

if TYPE_CHECKING:
    from operators.control_plane.db.store import Store

from embedded import RAY_LOOPBACK_ENV, LocalTestbed, instance_processes, stop_process_group

REGION = "gyeongnam"
LOG_TAIL_LINES = 40  # of each component's log, on a failed test on the local testbed

# The test stack (tests/stacks/Pulumi.gyeongnam.yaml) serves every test that is not about the real
# regions; the tests that are (tests/testbed/test_config.py, tests/infra) read REAL_STACK_DIR explicitly.
# Child processes (the local testbed's control plane, CLI subprocesses) inherit the variable.
os.environ["TESTBED_STACK_DIR"] = str(TEST_STACK_DIR)

# Any Ray started from the test process (ray.init) stays on 127.0.0.1 too.
os.environ.update(RAY_LOOPBACK_ENV)


@dataclass
class LocalTestbedHandle:
    testbed: LocalTestbed
    stack: StackConfig
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.testbed.home

    @property
    def state(self):
        state = self.testbed.load_state()
        assert state is not None
        return state

    @property
    def instance(self) -> str:
        return self.state.instance

    @property
    def control_plane_url(self) -> str:
        return self.state.control_plane_url

    @property
    def mlflow_url(self) -> str:
        return self.state.mlflow_url

    @property
    def ray_dashboard_url(self) -> str:
        return self.state.ray_dashboard_url

    @property
    def ray_address(self) -> str:
        return self.state.ray_address

    @property
    def operator_token(self) -> str:
        return self.testbed.token("operator")

    def refresh_tokens(self) -> None:
        self.tokens = {t.id: self.testbed.token(t.id) for t in self.stack.tenants}

    def client(self, tenant: str) -> TestbedClient:
        return TestbedClient(self.control_plane_url, self.tokens[tenant])

    def operator_client(self) -> TestbedClient:
        return TestbedClient(self.control_plane_url, self.operator_token)

    def restart_control_plane(self, crash: bool = False) -> None:
        """Stop the control plane (SIGKILL with ``crash``, else SIGTERM) and bring it back."""
        import signal

        pid = self.state.components["control_plane"].pid
        assert pid
        if crash:
            os.killpg(pid, signal.SIGKILL)
        stop_process_group(pid, timeout=15)
        self.testbed.up(region=REGION)

    def env(self) -> dict[str, str]:
        """Environment for running the ``testbed`` CLI against this testbed."""
        return {**os.environ, "TESTBED_HOME": str(self.home), "TESTBED_URL": self.control_plane_url}


@pytest.fixture(scope="session")
def local_testbed() -> Iterator[LocalTestbedHandle]:
    home = Path(tempfile.mkdtemp(prefix="tb-", dir="/tmp"))
    previous = os.environ.get("TESTBED_HOME")
    os.environ["TESTBED_HOME"] = str(home)
    testbed = LocalTestbed(home)
    handle = LocalTestbedHandle(testbed=testbed, stack=load_region(REGION))
    try:
        testbed.up(region=REGION, num_cpus=2, num_gpus=2)  # logical GPUs: GPU jobs, holds and stops run for real
        handle.refresh_tokens()
        yield handle
    finally:
        instance = testbed.load_state().instance if testbed.load_state() else None
        testbed.down()
        if previous is None:
            os.environ.pop("TESTBED_HOME", None)
        else:
            os.environ["TESTBED_HOME"] = previous
        leftovers = instance_processes(instance) if instance else []
        shutil.rmtree(home, ignore_errors=True)
        assert not leftovers, f"testbed down left processes behind: {leftovers}"


@pytest.fixture(autouse=True)
def _no_pinned_mlflow_tracking_uri() -> Iterator[None]:
    """A test that pins MLflow's tracking URI (``mlflow.set_tracking_uri``, which MLflow prefers to the environment)
    leaves it pinned to a server that may be gone: later tests in the process would talk to it."""
    yield
    tracking = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if tracking is not None and getattr(tracking, "_tracking_uri", None) is not None:
        tracking.set_tracking_uri(None)  # and the MLFLOW_TRACKING_URI it set for subprocesses


@dataclass
class NoopPlane:
    """A control plane with the no-op backend, served over real HTTP on 127.0.0.1."""

    url: str
    app: object
    home: Path

    @property
    def plane(self):
        return self.app.state.plane

    def token(self, subject: str) -> str:
        from tests.replicas import issued_token

        return issued_token(self.home, subject)

    def client(self, subject: str) -> TestbedClient:
        return TestbedClient(self.url, self.token(subject))


def make_noop_app(home: Path, stack_file: Path | None = None, sync: bool = True, **settings: Any):
    """The control plane on SQLite under ``home`` with the no-op backend and its test aids; ``settings``: any other."""
    from operators.control_plane.app import create_app
    from tests.noop_doubles import noop_backend
    from tests.replicas import noop_settings

    config = noop_settings(home, stack_file or stack_file_for(REGION), f"sqlite:///{home / 'cp.db'}", **settings)
    return create_app(config, backend=noop_backend(config), sync=sync)


@pytest.fixture()
def noop_plane(tmp_path: Path) -> Iterator[NoopPlane]:
    from tests.serve import serve_in_thread

    app = make_noop_app(tmp_path)
    with serve_in_thread(app) as url:
        yield NoopPlane(url=url, app=app, home=tmp_path)


# -- a throwaway PostgreSQL server (one per session), a fresh database per test ----------------
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    if not postgres.available():
        if os.environ.get("CI"):
            pytest.fail(postgres.MISSING)
        pytest.skip(postgres.MISSING)
    with postgres.postgres_server() as server:
        yield server


@pytest.fixture()
def store(tmp_path: Path) -> Iterator["Store"]:
    """A control plane's store on a new SQLite file (a module may define its own ``store``, e.g. on both databases)."""
    from operators.control_plane.db.store import Store

    store = Store(f"sqlite:///{tmp_path / 'cp.db'}")
    yield store
    store.close()


@pytest.fixture()
def postgres_url(postgres_server: postgres.PostgresServer) -> str:
    """The URL of a new, empty database."""
    return postgres_server.create_database()


# -- tiers: `make test-fast` runs `-m "not integration and not image"`, no real processes --------
# Fixtures that start real processes; a test using one is marked integration at collection.
PROCESS_FIXTURES = frozenset(
    {
        "local_testbed",
        "postgres_server",
        "postgres_url",
        "secured",
        "prometheus",
        "promtool",
        "prometheus_binary",
        "mlflow_server",
        "ray_address",
        "workloads",
        "mlflow_client",
        "open_server",
        "server",
    }
)
_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec"})
_spawned: list[str] | None = None  # set while a fast-tier test runs


def _record_spawn(event: str, args: tuple) -> None:
    if _spawned is not None and event in _SPAWN_EVENTS:
        _spawned.append(f"{event} {args[:2]!r}"[:200])


sys.addaudithook(_record_spawn)


def pytest_sessionstart(session: pytest.Session) -> None:
    """matplotlib lists the machine's fonts once (``fc-list``: a process) and caches the list in the user's cache
    folder: done here, before the process audit, not in the first fast-tier test that plots (a fresh machine, CI)."""
    import matplotlib.font_manager  # noqa: F401


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _fast(item: pytest.Item) -> bool:
    return not (item.get_closest_marker("integration") or item.get_closest_marker("image"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A test not marked ``integration`` or ``image`` starts no process, in its setup (any fixture,
    module- and session-scoped ones included) or its call (audited with sys.addaudithook, not patched)."""
    global _spawned
    outcome = yield
    report = outcome.get_result()
    # Teardown is not audited: the session's last teardown stops the shared processes (testbed down).
    spawned, _spawned = _spawned, ([] if _fast(item) and call.when == "setup" else None)
    if spawned and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} started processes but is not marked integration: {spawned[:3]}"
    if report.failed:
        _attach_testbed_logs(item, report)


def _attach_testbed_logs(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failed test on the session's local testbed reports the tail of each component's log (CI keeps no state)."""
    handle = getattr(item, "funcargs", {}).get("local_testbed")
    state = handle.testbed.load_state() if isinstance(handle, LocalTestbedHandle) else None
    for name, component in state.components.items() if state else ():
        log = Path(component.log) if component.log else None
        if log is not None and log.is_file():
            tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"testbed {name} log ({log})", "\n".join(tail)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    global _spawned
    _spawned = [] if _fast(item) else None
