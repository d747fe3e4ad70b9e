"""Every route the MLflow server serves, called with another tenant's ids, as raw HTTP.

The route list is read from this MLflow's own app objects (Flask rules, the FastAPI routers and
the basic-auth app's user/role routes), so a route added by an MLflow upgrade is swept too.
Each route gets the target tenant's ids in its path, its query string (GET) or its JSON body, so
a validator that reads any of the usual parameter names meets the target's resource.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx

from tests.mlflow.tenants import TenantData

# The UI's static files, and the assistant's event stream (a long poll; its siblings are swept).
_SKIP = re.compile(r"^/static-files|^/favicon|^/$|/signup|/users/create-ui|/assistant/sessions/.*/stream")
_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>|\{([a-z_]+)(?::path)?\}")


TIMED_OUT = 0  # Outcome.status of a request that got no answer in time


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with <param> / {param} placeholders
    # Protobuf routes: the request message's fields (None: unknown, send every value) and which
    # of them are repeated. Sending only known fields keeps a handler from answering 400 to a
    # parameter it does not know, which would hide what a wrongly allowed request returns.
    fields: frozenset[str] | None = None
    repeated: frozenset[str] = frozenset()


@dataclass
class Outcome:
    route: Route
    url: str
    status: int
    body: str
    request_text: str


@lru_cache(maxsize=1)
def all_routes() -> tuple[Route, ...]:
    from google.protobuf.message import Message
    from mlflow.server import app
    from mlflow.server.auth import routes as auth_routes
    from mlflow.server.fastapi_app import create_fastapi_app
    from mlflow.server.handlers import get_endpoints

    messages = {
        (path, method): handler
        for path, handler, methods in get_endpoints(get_handler=lambda cls: cls)
        for method in methods
    }
    found: set[Route] = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            message = messages.get((rule.rule, method))
            if isinstance(message, type) and issubclass(message, Message):
                fields = message.DESCRIPTOR.fields
                found.add(
                    Route(
                        method,
                        rule.rule,
                        frozenset(f.name for f in fields),
                        frozenset(f.name for f in fields if f.label == f.LABEL_REPEATED),
                    )
                )
            else:
                found.add(Route(method, rule.rule))
    for route in create_fastapi_app(app).routes:
        contexts = getattr(route, "effective_route_contexts", None)
        for context in contexts() if callable(contexts) else contexts or []:
            inner = getattr(context, "route", context)
            for method in (getattr(inner, "methods", None) or ()) - {"HEAD", "OPTIONS"}:
                found.add(Route(method, inner.path))
    auth_methods = {
        "CREATE": "POST",
        "GRANT": "POST",
        "REVOKE": "POST",
        "ASSIGN": "POST",
        "ADD": "POST",
        "UPDATE": "PATCH",
        "DELETE": "DELETE",
        "REMOVE": "DELETE",
        "UNASSIGN": "DELETE",
    }
    for name in dir(auth_routes):
        value = getattr(auth_routes, name)
        if name.isupper() and isinstance(value, str) and value.startswith(("/api", "/ajax-api")):
            verb = name.removeprefix("AJAX_").split("_")[0]
            found.add(Route(auth_methods.get(verb, "GET"), value))
    return tuple(sorted((r for r in found if not _SKIP.search(r.path)), key=lambda r: (r.path, r.method)))


def target_values(t: TenantData) -> dict[str, Any]:
    """Parameter name -> the target tenant's value (ids, names), for paths, queries and bodies."""
    return {
        "experiment_id": t.experiment_id,
        "experiment_ids": [t.experiment_id],
        "run_id": t.run_id,
        "run_uuid": t.run_id,
        "run_ids": [t.run_id],
        "name": t.model_name,
        "version": "1",
        "alias": "champion",
        "model_id": t.logged_model_id,
        "model_ids": [t.logged_model_id],
        "trace_id": t.trace_id,
        "request_id": t.trace_id,
        "trace_ids": [t.trace_id],
        "request_ids": [t.trace_id],
        "assessment_id": t.assessment_id,
        "dataset_id": t.dataset_id,
        "dataset_ids": [t.dataset_id],
        "workspace_name": t.tenant,
        "workspace": t.tenant,
        "username": t.tenant,
        "experiment_name": t.experiment_name,
        "path": "notes/marker.txt",
        "artifact_path": t.proxy_artifact_path,
        "key": "marker",
        "tag_key": "marker",
        "metric_key": "loss",
        "value": "overwritten",
        "new_name": f"{t.model_name}-stolen",
        "description": "overwritten",
        "stage": "Archived",
        "source": f"models:/{t.logged_model_id}",
        "password": "overwritten-password-123",
        "max_results": 1000,
        "filter": "",
        "filter_string": "",
        "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": t.experiment_id}}],
        "prompt_name": t.prompt_name,
        "role_id": 1,
        "resource_type": "experiment",
        "resource_id": t.experiment_id,
        "resource_pattern": "*",
        "permission": "MANAGE",
        "is_admin": True,
    }


def fill_path(path: str, values: dict[str, Any]) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in ("path", "artifact_path"):
            return values.get("artifact_path", "x")
        value = values.get(name, "x")
        return str(value[0] if isinstance(value, list) else value)

    return _PARAM.sub(one, path)


def _for_route(route: Route, values: dict[str, Any]) -> dict[str, Any]:
    if route.fields is None:
        return values
    chosen = {}
    for name in route.fields & values.keys():
        value = values[name]
        if name in route.repeated:
            chosen[name] = value if isinstance(value, list) else [value]
        else:
            chosen[name] = value[0] if isinstance(value, list) and value and not isinstance(value[0], dict) else value
    return chosen


def call(
    client: httpx.Client, route: Route, values: dict[str, Any], *, workspace: str | None, auth: tuple[str, str] | None
) -> Outcome:
    url = fill_path(route.path, values)
    values = _for_route(route, values)
    headers = {"X-MLFLOW-WORKSPACE": workspace} if workspace else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if route.method == "GET":
        kwargs["params"] = {
            k: v
            for k, v in values.items()
            if not isinstance(v, (dict, list)) or (isinstance(v, list) and all(isinstance(i, str) for i in v))
        }
        request_text = url + str(kwargs["params"])
    else:
        kwargs["json"] = values
        request_text = url + str(values)
    try:
        response = client.request(route.method, url, auth=auth, **kwargs)
    except httpx.TimeoutException:
        return Outcome(route, url, TIMED_OUT, "", request_text)
    return Outcome(route, url, response.status_code, response.text, request_text)


def leaks(outcome: Outcome, markers: list[str]) -> list[str]:
    """Markers of the target that the response holds and the request did not send."""
    return [m for m in markers if m in outcome.body and m not in outcome.request_text]


def sweep(
    url: str,
    target: TenantData | None,
    *,
    auth: tuple[str, str] | None,
    workspace: str | None,
    methods: frozenset[str] | None = None,
) -> list[Outcome]:
    """Call every route; ``target`` None: bare calls (no parameters), what a plain listing sends."""
    values = target_values(target) if target is not None else {}
    with httpx.Client(base_url=url, timeout=10) as client:
        return [
            call(client, route, values, workspace=workspace, auth=auth)
            for route in all_routes()
            if methods is None or route.method in methods
        ]
