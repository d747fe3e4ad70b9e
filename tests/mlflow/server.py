"""A real ``mlflow server`` on 127.0.0.1 for the tests and the benchmark, with or without access control.

With access control it is started exactly as the wiring plan says: ``testbed.mlflow_server.local_server_auth``
(ini, argv, env) on SQLite with proxied local artifacts. The server runs in its own process group
(gunicorn/uvicorn workers, huey) and :meth:`MlflowServer.stop` kills the whole group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from testbed.mlflow_server import AUTH_APP_NAME, MLFLOW_AUTH_APP_NAME, UVICORN_PARTS
from operators.mlflow_access import (
    OPERATOR_USERNAME,
    MlflowAccessAdmin,
    MlflowCredentials,
    local_server_auth,
    new_secret,
)

HOST = "127.0.0.1"
_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class MlflowServer:
    home: Path
    url: str
    process: subprocess.Popen
    admin_password: str | None = field(default=None, repr=False)  # None: no access control

    @property
    def secured(self) -> bool:
        return self.admin_password is not None

    def admin(self) -> MlflowAccessAdmin:
        assert self.admin_password is not None
        return MlflowAccessAdmin(self.url, self.admin_password)

    def log_text(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")

    def __enter__(self) -> "MlflowServer":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(wait)
                except subprocess.TimeoutExpired:
                    continue
        try:  # workers that outlived their parent
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_server(
    home: Path,
    *,
    secured: bool,
    timeout: float = 120.0,
    auth_cache_ttl_seconds: int | None = None,
    lookup_caches: bool = True,
    port: int | None = None,
    admin_password: str | None = None,
    mlflow_app: bool = False,
) -> MlflowServer:
    """Start ``mlflow server`` in ``home``; ``secured``: basic-auth + workspaces as wired for local mode (with
    ``admin_password`` if given; ``lookup_caches=False``: without the guard's memoized permission lookups, a
    benchmark's baseline); ``port``: a given one (a server restarted where it was); ``mlflow_app``: MLflow's own
    ``basic-auth`` app instead of the testbed's (testbed.mlflow_app), a benchmark's baseline."""
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    argv = [
        str(_BIN / "mlflow"),
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "artifacts"),
        "--serve-artifacts",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.pop("TESTBED_MLFLOW_LOOKUP_CACHES", None)
    if not lookup_caches:
        env["TESTBED_MLFLOW_LOOKUP_CACHES"] = "off"
    # The server imports the guard (testbed.mlflow_guard) from this checkout.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if not secured:
        admin_password = None
        argv += UVICORN_PARTS  # as the secured server's argv has them: the same HTTP parts on both sides of a ratio
    else:
        admin_password = admin_password or new_secret()
        cache = {} if auth_cache_ttl_seconds is None else {"auth_cache_ttl_seconds": auth_cache_ttl_seconds}
        auth = local_server_auth(home, admin_password, new_secret(), **cache)
        auth.write_ini()
        argv += [MLFLOW_AUTH_APP_NAME if mlflow_app and arg == AUTH_APP_NAME else arg for arg in auth.argv]
        env.update(auth.env)
    log = open(home / "server.log", "wb")
    process = subprocess.Popen(
        argv, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.close()
    server = MlflowServer(home=home, url=f"http://{HOST}:{port}", process=process, admin_password=admin_password)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{server.log_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"mlflow server not healthy after {timeout}s:\n{server.log_text()[-3000:]}")


@dataclass
class Identities:
    operator: MlflowCredentials
    tenants: dict[str, MlflowCredentials]


def provision(server: MlflowServer, tenants: list[str]) -> Identities:
    """The operator first, then each tenant (so each tenant workspace gets the operator's role)."""
    with server.admin() as admin:
        operator = admin.ensure_operator()
        assert operator.username == OPERATOR_USERNAME
        return Identities(operator=operator, tenants={t: admin.ensure_tenant(t) for t in tenants})
