"""testbed.mlflow_app: MLflow's app with its permission middleware skipped only where MLflow's own middleware hands a
request on untouched, and its workspace middleware as a plain layer that answers as MLflow's does (MLflow's app built
here, in process; the real server runs it in every other test of this folder: the isolation sweeps included)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlRun
from mlflow.store.tracking.sqlalchemy_workspace_store import WorkspaceAwareSqlAlchemyStore
from mlflow.utils.workspace_context import WorkspaceContext
from sqlalchemy.dialects import sqlite
from starlette.middleware.base import BaseHTTPMiddleware

from tests.mlflow.test_native_route_match import TRACKING_PATHS, _routes
from testbed import mlflow_app, mlflow_server


def _app_with_permission_middleware() -> Any:
    """What ``mlflow.server.auth.create_app`` returns under uvicorn: MLflow's FastAPI app and its permission
    middleware (without the auth database it also sets up)."""
    from mlflow.server import auth as mlflow_auth
    from mlflow.server.fastapi_app import create_fastapi_app

    app = create_fastapi_app()
    mlflow_auth.add_fastapi_permission_middleware(app)
    return app


class Recorder:
    """An ASGI app that records what reached it (and the workspace bound for it), answering 200."""

    def __init__(self) -> None:
        self.reached: list[str] = []
        self.workspaces: list[str | None] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from mlflow.utils.workspace_context import get_request_workspace

        self.reached.append(scope["path"])
        self.workspaces.append(get_request_workspace())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _call(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]] = ()) -> tuple[int, bytes]:
    """One request through an ASGI app, with no credentials: (status, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    loop = (
        asyncio.new_event_loop()
    )  # not asyncio.run: that leaves this thread without a current loop (Pulumi's mocks use it)
    try:
        loop.run_until_complete(app(scope, receive, send))
    finally:
        loop.close()
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_the_app_name_is_this_module_for_mlflow_itself():
    """``--app-name`` names this module's factory, as MLflow looks apps up (its entry points)."""
    from mlflow.server import _find_app

    assert mlflow_server.SERVER_ARGV[:2] == ("--app-name", "testbed-basic-auth")
    assert _find_app(mlflow_server.AUTH_APP_NAME) == "testbed.mlflow_app:create_app"


def test_the_two_layers_are_replaced_and_nothing_else():
    app = _app_with_permission_middleware()
    before = [(m.cls, m.kwargs.get("dispatch")) for m in app.user_middleware]
    mlflow_app.streamlined(app)
    after = [(m.cls, m.kwargs.get("dispatch")) for m in app.user_middleware]
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    assert len(before) == len(after) and len(changed) == 2
    assert {a[0] for _, a in changed} == {mlflow_app.FlaskServedPassThrough, mlflow_app.WorkspaceBinding}
    assert {b[1].__name__ for b, _ in changed} == {mlflow_app.PERMISSION_MIDDLEWARE, mlflow_app.WORKSPACE_MIDDLEWARE}


def test_an_app_without_the_middleware_is_refused():
    """An MLflow whose app no longer has the permission middleware by that name: the server does not start."""
    from mlflow.server.fastapi_app import create_fastapi_app

    with pytest.raises(mlflow_app.AppLayoutChanged, match=mlflow_app.PERMISSION_MIDDLEWARE):
        mlflow_app.streamlined(create_fastapi_app())


def test_skipped_only_where_mlflow_hands_the_request_on_untouched(monkeypatch):
    """Every native FastAPI route and the Flask-served tracking paths, every method, with no credentials, through
    MLflow's permission middleware and through the pass-through, fail-closed net on (as the testbed runs it).
    Wherever the pass-through skips MLflow's middleware, that middleware reached the app too without credentials;
    wherever MLflow refused, the pass-through refuses the same; and the tracking calls do take the short way."""
    monkeypatch.setenv(mlflow_server.ENV_FAIL_CLOSED, "true")
    app = _app_with_permission_middleware()
    dispatch = next(m.kwargs["dispatch"] for m in app.user_middleware if m.cls is BaseHTTPMiddleware)
    assert dispatch.__name__ == mlflow_app.PERMISSION_MIDDLEWARE
    from mlflow.server import auth as mlflow_auth

    native = mlflow_auth._native_fastapi_routes(app)
    paths = sorted({re.sub(r"\{[^}]+\}", "x", path) for path, _ in _routes(native)} | set(TRACKING_PATHS))
    skipped, refused = [], 0
    for path in paths:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            upstream, passthrough = Recorder(), Recorder()
            expected = _call(BaseHTTPMiddleware(upstream, dispatch=dispatch), method, path)
            got = _call(mlflow_app.FlaskServedPassThrough(passthrough, dispatch, native), method, path)
            assert got == expected, (method, path)
            assert len(passthrough.reached) == len(upstream.reached), (method, path)
            scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
            if mlflow_app.flask_served(native, scope):
                assert upstream.reached == [path], (method, path)  # MLflow let it through unauthenticated
                skipped.append((method, path))
            refused += expected[0] in (401, 403)
    assert refused > 20  # MLflow's middleware did refuse here: the comparison saw both kinds
    assert {("POST", "/api/2.0/mlflow/runs/log-batch"), ("GET", "/health")} <= set(skipped)
    assert not [p for m, p in skipped if p.startswith(("/gateway/", "/ajax-api/3.0/jobs", "/v1/traces"))]


@pytest.mark.parametrize("header", [None, "some-workspace"])
def test_workspace_binding_answers_as_mlflow_does(monkeypatch, header):
    """Workspaces off (this process has no workspace store): no header binds none; a header is refused with
    MLflow's own error, by MLflow's middleware and by the plain layer alike."""
    monkeypatch.delenv("MLFLOW_ENABLE_WORKSPACES", raising=False)
    from mlflow.server.fastapi_app import create_fastapi_app
    from mlflow.server.workspace_helpers import WORKSPACE_HEADER_NAME

    app = create_fastapi_app()
    dispatch = next(
        m.kwargs["dispatch"]
        for m in app.user_middleware
        if getattr(m.kwargs.get("dispatch"), "__name__", "") == mlflow_app.WORKSPACE_MIDDLEWARE
    )
    headers = [(WORKSPACE_HEADER_NAME.lower().encode(), header.encode())] if header else []
    upstream, plain = Recorder(), Recorder()
    expected = _call(BaseHTTPMiddleware(upstream, dispatch=dispatch), "POST", "/api/2.0/mlflow/runs/log-batch", headers)
    got = _call(mlflow_app.WorkspaceBinding(plain), "POST", "/api/2.0/mlflow/runs/log-batch", headers)
    assert got == expected
    assert (plain.reached, plain.workspaces) == (upstream.reached, upstream.workspaces)
    if header:
        assert expected[0] >= 400 and "workspaces are not enabled" in json.loads(expected[1])["message"]
    else:
        assert plain.workspaces == [None] and expected[0] == 200


class PrebuiltStore(WorkspaceAwareSqlAlchemyStore):
    """MLflow's workspace-aware tracking store, to be given the prebuilt run query here (its parent keeps MLflow's)."""


@pytest.fixture
def two_workspace_stores(tmp_path, monkeypatch) -> tuple[Any, Any]:
    """MLflow's store and the prebuilt one on one tracking database with workspaces ``alpha`` and ``beta``."""
    from mlflow.entities.workspace import Workspace
    from mlflow.store.workspace.sqlalchemy_store import SqlAlchemyStore as WorkspaceStore

    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    upstream = WorkspaceAwareSqlAlchemyStore(uri, str(tmp_path / "artifacts"))
    workspaces = WorkspaceStore(uri)
    for name in ("alpha", "beta"):
        workspaces.create_workspace(Workspace(name=name))
    assert mlflow_app.prebuild_run_scope(PrebuiltStore)
    return upstream, PrebuiltStore(uri, str(tmp_path / "artifacts"))


def _compiled(query: Any) -> tuple[str, dict]:
    compiled = query.statement.compile(dialect=sqlite.dialect())
    return str(compiled), compiled.params


def test_run_query_is_mlflows_own_built_once_per_workspace(two_workspace_stores):
    upstream, prebuilt = two_workspace_stores
    assert WorkspaceAwareSqlAlchemyStore._get_query is not PrebuiltStore._get_query  # MLflow's class untouched here
    for workspace in ("alpha", "beta", "alpha"):
        with WorkspaceContext(workspace), upstream.ManagedSessionMaker() as session:
            for model in (SqlRun, SqlExperiment):
                mlflows = upstream._get_query(session, model).filter_by(lifecycle_stage="active")
                ours = prebuilt._get_query(session, model).filter_by(lifecycle_stage="active")
                assert _compiled(ours) == _compiled(mlflows)
                assert ours.session is session
            # built once: a second call in the workspace reuses the first one's clause (MLflow's builds a new one)
            again = (prebuilt._get_query(session, SqlRun), prebuilt._get_query(session, SqlRun))
            assert again[0].whereclause is again[1].whereclause and again[0] is not again[1]


def test_runs_stay_in_their_workspace_through_the_prebuilt_query(two_workspace_stores):
    _, store = two_workspace_stores
    runs = {}
    for workspace in ("alpha", "beta"):
        with WorkspaceContext(workspace):
            experiment = store.create_experiment(f"{workspace}-experiment")
            runs[workspace] = store.create_run(experiment, "someone", 0, [], "run").info.run_id
    for _ in range(2):  # the second time from the prebuilt queries
        for workspace, other in (("alpha", "beta"), ("beta", "alpha")):
            with WorkspaceContext(workspace):
                assert store.get_run(runs[workspace]).info.run_id == runs[workspace]
                with pytest.raises(MlflowException, match="not found"):
                    store.get_run(runs[other])
