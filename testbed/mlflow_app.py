"""MLflow's basic-auth app, with two of its per-request ASGI layers made plain (``mlflow server --app-name
testbed-basic-auth``; entry point ``mlflow.app`` in pyproject.toml, so it runs wherever this package is installed:
the local venv and the testbed image).

``mlflow.server.auth.create_app`` builds the app; this module changes two entries of its middleware list and
nothing else. Those two are ``@app.middleware("http")`` functions, which Starlette runs through
``BaseHTTPMiddleware``: per layer and request, the rest of the app runs as a task of its own, its messages come
back through a memory stream, and its response is streamed out again, before the Flask app's answer reaches the
client.

- MLflow's FastAPI permission middleware guards the routes FastAPI serves itself; a request Flask serves (every
  tracking API call: Flask's ``_before_request`` authorizes it) is handed on untouched. Here such a request goes
  straight on: :func:`flask_served` asks MLflow's own questions (an unprotected path; no FastAPI validator for the
  path; not one of the app's native FastAPI routes), and any other request goes through MLflow's middleware as
  before.
- The workspace middleware resolves the request's ``X-MLflow-Workspace`` and binds it for the request; here
  :class:`WorkspaceBinding` does the same with MLflow's own functions, as a plain ASGI layer.

Both are found by their names in the app's middleware list; an MLflow that no longer has them stops the server
from starting (:class:`AppLayoutChanged`) rather than serving something unchecked.

One store method is given a memo (:func:`prebuild_run_scope`): the workspace-aware tracking store scopes every run
query by joining the run's experiment and filtering on the workspace, and builds that query again on every call
(twice per logged metric: most of the Python the server runs for workspaces). Here MLflow's own method builds it
once per workspace; each call gets a copy bound to its session.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.server import auth as mlflow_auth
from mlflow.server.asgi_utils import get_routed_asgi_path
from mlflow.server.workspace_helpers import WORKSPACE_HEADER_NAME, resolve_workspace_for_request_if_enabled
from mlflow.store.tracking.dbmodels.models import SqlRun
from mlflow.store.tracking.sqlalchemy_workspace_store import WorkspaceAwareSqlAlchemyStore
from mlflow.utils.workspace_context import clear_server_request_workspace, set_server_request_workspace
from sqlalchemy.orm import Query
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

PERMISSION_MIDDLEWARE = "fastapi_permission_middleware"  # mlflow.server.auth.add_fastapi_permission_middleware
WORKSPACE_MIDDLEWARE = "workspace_context_middleware"  # mlflow.server.fastapi_app.add_fastapi_workspace_middleware


# WorkspaceAwareSqlAlchemyStore._get_query as read for prebuild_run_scope (mlflow 3.17.2): for SqlRun it builds from
# ``session.query`` alone, so the query can be built without a session and bound to one later.
RUN_SCOPE_SOURCE_SHA256 = "9cc926bae14f7d80ede3ed5cfc128dfb7fb685d33cfe726608bd7d234efbf2db"
RUN_SCOPE_WORKSPACES = 1024  # prebuilt queries kept (one per workspace: a company each); more: all built again


class AppLayoutChanged(RuntimeError):
    """The MLflow app no longer has the middleware this module replaces (an MLflow upgrade): nothing is served."""


def flask_served(native_routes: list[Any], scope: Scope) -> bool:
    """Whether MLflow's permission middleware would hand this request on without looking at it: an unprotected
    path, or one with no FastAPI validator that none of the app's own FastAPI routes serves (Flask authorizes it).
    The fail-closed net only ever denies a native route, which goes through the middleware itself."""
    path = scope.get("path")
    if not path:  # MLflow then reads the path from the URL: leave it to MLflow
        return False
    if mlflow_auth.is_unprotected_route(path):
        return True
    return mlflow_auth._find_fastapi_validator(path, scope["method"]) is None and not (
        mlflow_auth._scope_matches_native_route(native_routes, scope)
    )


class FlaskServedPassThrough:
    """MLflow's permission middleware, skipped for the requests it would hand on untouched (:func:`flask_served`)."""

    def __init__(self, app: ASGIApp, dispatch: Any, native_routes: list[Any]) -> None:
        self.app = app
        self.guarded = BaseHTTPMiddleware(app, dispatch=dispatch)
        self.native_routes = native_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and flask_served(self.native_routes, scope):
            await self.app(scope, receive, send)
        else:
            await self.guarded(scope, receive, send)


class WorkspaceBinding:
    """MLflow's workspace middleware as a plain ASGI layer: the request's workspace (its header) is resolved and
    bound for the request; one that cannot be resolved is answered with MLflow's error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            workspace = resolve_workspace_for_request_if_enabled(
                get_routed_asgi_path(request), request.headers.get(WORKSPACE_HEADER_NAME)
            )
        except MlflowException as e:
            error = JSONResponse(status_code=e.get_http_status_code(), content=json.loads(e.serialize_as_json()))
            await error(scope, receive, send)
            return
        set_server_request_workspace(workspace.name if workspace else None)
        try:
            await self.app(scope, receive, send)
        finally:
            clear_server_request_workspace()


def _position(middleware: list[Middleware], name: str) -> int:
    """Where the ``@app.middleware("http")`` function ``name`` is in the app's middleware list."""
    found = [i for i, m in enumerate(middleware) if getattr(m.kwargs.get("dispatch"), "__name__", None) == name]
    if len(found) != 1 or middleware[found[0]].cls is not BaseHTTPMiddleware:
        raise AppLayoutChanged(f"MLflow's app has {len(found)} middleware functions named {name!r}; expected one")
    return found[0]


class _Unbound:
    """Stands in for a session where MLflow's method only asks it for a query: the query, bound to no session."""

    @staticmethod
    def query(*entities: Any) -> Query:
        return Query(entities)


def prebuild_run_scope(store_class: type = WorkspaceAwareSqlAlchemyStore) -> bool:
    """Make ``store_class._get_query`` build its run query once per workspace (with MLflow's own method, given no
    session) and hand each call a copy bound to the caller's session; every other model goes to MLflow's method as
    before. Done once; not done (False, logged) when MLflow's method is not the one read for this
    (``RUN_SCOPE_SOURCE_SHA256``): the store then runs as MLflow ships it."""
    upstream = store_class._get_query
    if getattr(upstream, "prebuilt_run_scope", False):
        return True
    if hashlib.sha256(inspect.getsource(upstream).encode()).hexdigest() != RUN_SCOPE_SOURCE_SHA256:
        log.warning("MLflow's %s._get_query changed: its run query is built on every call", store_class.__name__)
        return False
    prebuilt: dict[str, Query] = {}

    def _get_query(self: Any, session: Any, model: Any) -> Any:
        if model is not SqlRun:
            return upstream(self, session, model)
        workspace = self._get_active_workspace()
        query = prebuilt.get(workspace)
        if query is None:
            if len(prebuilt) >= RUN_SCOPE_WORKSPACES:
                prebuilt.clear()
            query = prebuilt[workspace] = upstream(self, _Unbound(), model)
        return query.with_session(session)

    _get_query.prebuilt_run_scope = True  # type: ignore[attr-defined]
    _get_query.__doc__ = upstream.__doc__
    store_class._get_query = _get_query  # type: ignore[method-assign]
    return True


def create_app() -> Any:
    """``mlflow.server.auth.create_app()``, :func:`streamlined` (a Flask app, when MLflow is not served by uvicorn,
    is returned as it is), its tracking store's run query prebuilt (:func:`prebuild_run_scope`)."""
    prebuild_run_scope()
    app = mlflow_auth.create_app()
    return streamlined(app) if hasattr(app, "user_middleware") else app


def streamlined(app: Any) -> Any:
    """``app`` (MLflow's FastAPI app, its permission middleware added, not yet started) with that middleware
    skipped for Flask-served requests and the workspace middleware a plain ASGI layer."""
    layers = app.user_middleware
    permission = _position(layers, PERMISSION_MIDDLEWARE)
    native_routes = mlflow_auth._native_fastapi_routes(app)  # what MLflow's middleware took: every route is in
    layers[permission] = Middleware(
        FlaskServedPassThrough, dispatch=layers[permission].kwargs["dispatch"], native_routes=native_routes
    )
    layers[_position(layers, WORKSPACE_MIDDLEWARE)] = Middleware(WorkspaceBinding)
    return app
