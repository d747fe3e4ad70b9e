"""The guard's memo of MLflow's fail-closed route check (``testbed.mlflow_guard.native_route_match``) answers as
MLflow does, for MLflow's own FastAPI routes and for the paths its Flask app serves (MLflow's app built here, in
process; the guard imported without installing its caches into this process)."""

from __future__ import annotations

import re

from starlette.routing import Host

TRACKING_PATHS = [
    "/api/2.0/mlflow/runs/log-batch",
    "/api/2.0/mlflow/runs/log-metric",
    "/api/2.0/mlflow/experiments/get-by-name",
    "/ajax-api/2.0/mlflow/runs/search",
    "/",
    "/static-files/index.html",
]


def _routes(routes, prefix=""):
    """(full path, route) of every route, included routers walked."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes, prefix + route.include_context.prefix)
        else:
            yield prefix + getattr(route, "path", ""), route


def test_the_memo_answers_as_mlflow_does(monkeypatch):
    monkeypatch.setenv("TESTBED_MLFLOW_LOOKUP_CACHES", "off")  # import the guard without patching this process
    from mlflow.server import auth as mlflow_auth
    from mlflow.server.fastapi_app import create_fastapi_app

    from testbed.mlflow_guard import NATIVE_ROUTE_PATH_CHARS, NATIVE_ROUTE_PATHS, LookupCaches, native_route_match

    native = mlflow_auth._native_fastapi_routes(create_fastapi_app())
    walked = list(_routes(native))
    # what the memo's key assumes: no route matches on the Host header, only on type, method and path
    assert walked and not [route for _, route in walked if isinstance(route, Host)]
    upstream = mlflow_auth._scope_matches_native_route
    caches = LookupCaches(ttl_seconds=60, max_size=1000)
    memo = native_route_match(upstream, caches)
    paths = [re.sub(r"\{[^}]+\}", "x", path) for path, _ in walked] + TRACKING_PATHS
    answers = []
    for path in paths:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
            expected = upstream(native, scope)
            assert memo(native, scope) == expected == memo(native, scope), (method, path)  # a miss, then a hit
            answers.append(expected)
    assert True in answers and False in answers  # both kinds of path were asked
    assert len(caches.native_routes) == len(set(paths)) * 5
    # a path longer than the memo keeps (the check runs before authentication): asked of MLflow, not kept
    for i in range(3):
        scope = {"type": "http", "method": "GET", "path": f"/api/{i}" + "x" * NATIVE_ROUTE_PATH_CHARS, "root_path": ""}
        assert memo(native, scope) == upstream(native, scope)
    assert len(caches.native_routes) == len(set(paths)) * 5
    assert caches.native_routes.maxsize == NATIVE_ROUTE_PATHS >= len(caches.native_routes)
    assert not any(
        upstream(native, {"type": "http", "method": "POST", "path": p, "root_path": ""}) for p in TRACKING_PATHS
    )
