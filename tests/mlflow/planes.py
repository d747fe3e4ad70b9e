"""A control plane on the no-op backend wired to a real access-controlled MLflow server (its admin password in a
0600 file, as the embedded mode and the cluster hand it over), served over HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI

from testbed.secrets import write_secret
from tests.conftest import NoopPlane
from tests.mlflow.server import MlflowServer


def control_plane_app(server: MlflowServer, home: Path) -> FastAPI:
    """The app (no background sync) of a gyeongnam control plane in ``home`` that provisions ``server``."""
    from operators.control_plane.app import create_app
    from testbed.config import stack_file_for
    from tests.replicas import noop_settings

    password_file = home / "credentials" / "mlflow-admin.password"
    write_secret(password_file, server.admin_password)
    settings = noop_settings(
        home,
        stack_file_for("gyeongnam"),
        f"sqlite:///{home / 'cp.db'}",
        mlflow_tracking_uri=server.url,
        mlflow_admin_password_file=password_file,
    )
    return create_app(settings, sync=False)


@contextmanager
def plane_on(server: MlflowServer, home: Path) -> Iterator[NoopPlane]:
    """That control plane, served until the block ends."""
    from tests.serve import serve_in_thread

    app = control_plane_app(server, home)
    with serve_in_thread(app) as url:
        yield NoopPlane(url=url, app=app, home=home)
