"""MLflow basic-auth's own authentication, plus two refusals for non-admins.

1. The user roster. MLflow 3.17 lets any workspace member call ``GET /api/2.0/mlflow/users/list``
   (and its ajax twin) and answers with every username on the server -- here every tenant id and
   the operator's -- for the UI's reviewer picker (``validate_can_list_users``).
2. Server-wide features the testbed does not offer tenants, which MLflow opens to any logged-in
   user: the Assistant (``/ajax-api/3.0/mlflow/assistant/*``: one server-wide config that any
   user may rewrite, and tools run by the server process for clients on the same host -- which,
   in local mode, every tenant's Ray job is) and demo data (``/ajax-api/3.0/mlflow/demo/*``).

Everything else is decided by MLflow itself, with five of its per-request lookups memoized
(:func:`install_lookup_caches`, when the ini's ``auth_cache_ttl_seconds`` > 0): which experiment a
run belongs to (never changes), whether a request's path is one of MLflow's own FastAPI routes (the
fail-closed net's question, fixed once the app is built: :func:`native_route_match`), a user's record, a user's role grants in a workspace and the
workspace a request names (kept at most ``auth_cache_ttl_seconds``; every write through the auth
store or the workspace store on this worker -- a rotated password, a changed grant, a deleted user
or workspace -- empties them at once). MLflow's own credential cache
(the same TTL) already skips the password hash; without these, a logged metric still paid four
database reads for its permission check (tests/benchmarks/bench_mlflow_auth.py). tests/mlflow/test_isolation_rest.py
(test_no_roster_of_other_tenants, test_server_wide_features_are_the_admins) shows each leak
without this module and its absence with it.

Plugged in through MLflow's own hook: ``authorization_function`` in the auth ini
(``mlflow.server.auth.authenticate_request`` calls it on every request, Flask and FastAPI routes
alike, and ``_before_request`` answers a returned Response as is). Self-contained on purpose --
it imports only mlflow and flask -- so cluster mode can mount this file from a ConfigMap into the
upstream MLflow image as module ``testbed_mlflow_guard``.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from typing import Any, Callable

from cachetools import LRUCache, TTLCache
from flask import Response, make_response, request
from mlflow.server import auth as mlflow_auth
from mlflow.server.auth import authenticate_request_basic_auth, store
from mlflow.server.auth.routes import AJAX_LIST_USERS, LIST_USERS
from mlflow.store.workspace.sqlalchemy_store import SqlAlchemyStore as WorkspaceStore
from werkzeug.datastructures import Authorization

ROSTER_PATHS = (LIST_USERS, AJAX_LIST_USERS)
ADMIN_ONLY_PREFIXES = ("/ajax-api/3.0/mlflow/assistant", "/ajax-api/3.0/mlflow/demo/")


def admin_only(path: str) -> bool:
    return path.rstrip("/").endswith(ROSTER_PATHS) or any(prefix in path for prefix in ADMIN_ONLY_PREFIXES)


def authenticate() -> Authorization | Response:
    """``authenticate_request_basic_auth``, refusing the paths above to non-admins."""
    result = authenticate_request_basic_auth()
    if isinstance(result, Authorization) and admin_only(request.path):
        if not store.get_user(result.username).is_admin:
            response = make_response("Permission denied")
            response.status_code = 403
            return response
    return result


LOOKUP_CACHES_ENV = "TESTBED_MLFLOW_LOOKUP_CACHES"
# The fail-closed route check's memo: MLflow's own paths are a few hundred short ones. A longer path is asked of
# MLflow each time, so a client (the check runs before authentication) cannot fill a worker's memory with paths.
NATIVE_ROUTE_PATHS = 1024
NATIVE_ROUTE_PATH_CHARS = 256
# Auth-store methods that change a user, a role, a grant or a permission (all start with these).
_WRITE_METHOD = re.compile(r"^(create|update|delete|grant|revoke|rename|set|add|remove|assign|unassign)_")


class LookupCaches:
    """The memoized lookups of one server worker; ``clear()`` on every auth-store write."""

    def __init__(self, ttl_seconds: int, max_size: int):
        self.lock = threading.Lock()
        self.users: TTLCache = TTLCache(maxsize=max_size, ttl=ttl_seconds)
        self.grants: TTLCache = TTLCache(maxsize=max_size, ttl=ttl_seconds)
        self.workspaces: TTLCache = TTLCache(maxsize=max_size, ttl=ttl_seconds)
        self.run_experiments: LRUCache = LRUCache(maxsize=max_size)  # a run never changes experiment
        # the app's routes are fixed once it is built; the paths are the client's (asked before authentication):
        # a few, short ones kept (NATIVE_ROUTE_PATHS, NATIVE_ROUTE_PATH_CHARS)
        self.native_routes: LRUCache = LRUCache(maxsize=NATIVE_ROUTE_PATHS)
        self.generation = 0  # bumped by clear(): a lookup that raced a write is not stored

    def clear(self) -> None:
        with self.lock:
            self.generation += 1
            self.users.clear()
            self.grants.clear()
            self.workspaces.clear()

    def cached(self, cache: TTLCache | LRUCache, key: Any, load: Callable[[], Any]) -> Any:
        with self.lock:
            hit = cache.get(key)
            generation = self.generation
        if hit is not None:
            return hit
        value = load()
        with self.lock:
            if value is not None and generation == self.generation:
                cache[key] = value
        return value


def install_lookup_caches(ttl_seconds: int, max_size: int = 10_000) -> LookupCaches | None:
    """Memoize ``store.get_user``, ``store.list_grants`` and the run -> experiment lookup of this
    process's MLflow auth app (idempotent; ``ttl_seconds`` 0: nothing is cached)."""
    installed = getattr(store, "_testbed_lookup_caches", None)
    if installed is not None or ttl_seconds <= 0:
        return installed
    caches = LookupCaches(ttl_seconds, max_size)

    def writer(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def write_then_forget(*args: Any, **kwargs: Any) -> Any:
            caches.clear()
            try:
                return method(*args, **kwargs)
            finally:
                caches.clear()  # also after: a read that began before the write is not kept

        return write_then_forget

    for name in dir(store):
        if _WRITE_METHOD.match(name) and callable(getattr(store, name)):
            setattr(store, name, writer(getattr(store, name)))

    get_user, list_grants = store.get_user, store.list_grants
    store.get_user = functools.wraps(get_user)(
        lambda username: caches.cached(caches.users, username, lambda: get_user(username))
    )
    store.list_grants = functools.wraps(list_grants)(
        lambda user_id, workspace, resource_types: caches.cached(
            caches.grants,
            (user_id, workspace, frozenset(resource_types)),
            lambda: list_grants(user_id, workspace, resource_types),
        )
    )

    invalidate_credentials = mlflow_auth._invalidate_user_auth_cache

    def invalidate_user(username: str) -> None:
        invalidate_credentials(username)
        caches.clear()

    mlflow_auth._invalidate_user_auth_cache = invalidate_user

    run_requirement = mlflow_auth._run_requirement

    def cached_run_requirement(run_id: str, action: str) -> Any:
        """MLflow's own answer for (run, action): it depends only on the run's experiment, which never
        changes (a missing run is not remembered: MLflow denies it each time)."""
        anchor_and_requirements = caches.cached(
            caches.run_experiments, (run_id, action), lambda: run_requirement(run_id, action)
        )
        if anchor_and_requirements is None:
            return None
        anchor, requirements = anchor_and_requirements
        return anchor, list(requirements)

    mlflow_auth._run_requirement = cached_run_requirement

    # The workspace a request names (its X-MLflow-Workspace header), read from the tracking database on every
    # request; a create, update or delete of a workspace on this worker forgets them all at once.
    get_workspace = WorkspaceStore.get_workspace

    def cached_get_workspace(self: WorkspaceStore, workspace_name: str) -> Any:
        return caches.cached(caches.workspaces, (id(self), workspace_name), lambda: get_workspace(self, workspace_name))

    WorkspaceStore.get_workspace = functools.wraps(get_workspace)(cached_get_workspace)
    mlflow_auth._scope_matches_native_route = native_route_match(mlflow_auth._scope_matches_native_route, caches)
    for name in ("create_workspace", "update_workspace", "delete_workspace"):
        setattr(WorkspaceStore, name, writer(getattr(WorkspaceStore, name)))
    store._testbed_lookup_caches = caches
    return caches


def native_route_match(upstream: Callable[[Any, Any], bool], caches: LookupCaches) -> Callable[[Any, Any], bool]:
    """MLflow's fail-closed net asks of every request its Flask app serves whether the request matches one of the
    FastAPI app's own routes, trying each route in turn. The answer depends only on the request's type, method and
    path (MLflow has no ``Host`` routes: tests/mlflow/test_native_route_match.py) and on the routes, which are fixed
    once the app is built: it is remembered per (routes, type, method, root path, path), for paths of at most
    ``NATIVE_ROUTE_PATH_CHARS``."""

    def cached_match(native_routes: Any, scope: Any) -> bool:
        path, root = scope.get("path") or "", scope.get("root_path") or ""
        if len(path) + len(root) > NATIVE_ROUTE_PATH_CHARS:
            return upstream(native_routes, scope)
        key = (id(native_routes), scope.get("type"), scope.get("method"), root, path)
        return bool(caches.cached(caches.native_routes, key, lambda: upstream(native_routes, scope)))

    return functools.wraps(upstream)(cached_match)


# ``TESTBED_MLFLOW_LOOKUP_CACHES=off`` leaves MLflow's lookups as they are (the benchmark's baseline).
LOOKUP_CACHES = install_lookup_caches(
    mlflow_auth.auth_config.auth_cache_ttl_seconds if os.environ.get(LOOKUP_CACHES_ENV, "on") != "off" else 0,
    mlflow_auth.auth_config.auth_cache_max_size,
)
