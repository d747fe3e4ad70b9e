"""Tenant isolation on a real MLflow server, as raw HTTP (REST 2.0/3.0, ajax-api, graphql, the
artifact proxy, the UI's artifact routes, users/roles/workspaces).

One table of well-formed calls (tests/mlflow/operations.py): the owner plays it and everything
succeeds; tenant B plays it against tenant A's resources (from its own workspace, naming A's
workspace, and with no workspace) and every write is refused and no read shows A's data; the
operator plays it and reads everything but writes nothing. A's data is compared before and after.
Then every route MLflow serves is swept the same way (tests/mlflow/sweep.py).
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.mlflow.operations import ALL, intruder_problems, play
from tests.mlflow.sweep import TIMED_OUT, all_routes, leaks, sweep
from tests.mlflow.tenants import seed

WORKSPACE_VARIANTS = ("own", "target", "none")


def _workspace(variant: str, own: str, target: str) -> str | None:
    return {"own": own, "target": target, "none": None}[variant]


@pytest.fixture
def http(secured):
    with httpx.Client(base_url=secured.url, timeout=30) as client:
        yield client


def test_owner_can_do_everything_on_its_own_resources(secured, http):
    """The table is well-formed: tenant A plays all of it on a fresh copy of its data."""
    fresh = seed(secured.url, secured.a)
    auth = (secured.a.username, secured.a.password)
    failed = []
    for op in ALL:
        response = play(http, op, fresh, auth=auth, workspace=secured.a.workspace)
        if response.status_code >= 300 or '"errors"' in response.text[:40]:
            failed.append((op.name, response.status_code, response.text[:200]))
        elif op.shows_secret and fresh.secret not in response.text:
            failed.append((op.name, "answer lacks the owner's data", response.text[:200]))
    assert not failed, failed


@pytest.mark.parametrize("variant", WORKSPACE_VARIANTS)
def test_other_tenant_reaches_nothing(secured, http, variant):
    a = secured.a_data
    workspace = _workspace(variant, secured.b.workspace, a.tenant)
    before = secured.a_snapshot()
    problems = intruder_problems(http, a, auth=(secured.b.username, secured.b.password), workspace=workspace)
    assert not problems, problems
    assert secured.a_snapshot() == before


def test_operator_reads_everything_and_writes_nothing(secured, http):
    a = secured.a_data
    auth = (secured.operator.username, secured.operator.password)
    before = secured.a_snapshot()
    problems = []
    for op in ALL:
        response = play(http, op, a, auth=auth, workspace=a.tenant)
        if op.write and response.status_code < 400:
            problems.append((op.name, "operator write accepted", response.status_code))
        if not op.write and (response.status_code != 200 or (op.shows_secret and a.secret not in response.text)):
            problems.append((op.name, "operator cannot read", response.status_code, response.text[:200]))
    assert not problems, problems
    assert secured.a_snapshot() == before


def test_operator_sees_both_tenants_but_only_one_workspace_at_a_time(secured):
    auth = (secured.operator.username, secured.operator.password)
    with httpx.Client(base_url=secured.url, auth=auth, timeout=30) as client:
        names = {w["name"] for w in client.get("/api/3.0/mlflow/workspaces").json().get("workspaces", [])}
        assert {secured.a.username, secured.b.username} <= names and "default" not in names
        for data in (secured.a_data, secured.b_data):
            found = client.post(
                "/api/2.0/mlflow/experiments/search",
                json={"max_results": 1000},
                headers={"X-MLFLOW-WORKSPACE": data.tenant},
            ).json()["experiments"]
            assert data.experiment_id in {e["experiment_id"] for e in found}
        nothing = client.post("/api/2.0/mlflow/experiments/search", json={"max_results": 1000}).json()
        assert nothing.get("experiments", []) == []  # the default workspace: no grant there


def test_tenant_lists_only_its_own_workspace(secured):
    response = httpx.get(f"{secured.url}/api/3.0/mlflow/workspaces", auth=(secured.b.username, secured.b.password))
    assert [w["name"] for w in response.json().get("workspaces", [])] == [secured.b.username]
    for path in (
        f"/api/3.0/mlflow/workspaces/{secured.a.username}",
        f"/api/3.0/mlflow/workspaces/{secured.b.username}",
    ):
        assert httpx.get(secured.url + path, auth=(secured.b.username, secured.b.password)).status_code == 403


def test_identity_administration_is_the_admins(secured, http):
    """B cannot read A's user, reset A's password, make itself admin, give itself a role or a grant
    in A's workspace, create users or workspaces; the same calls as admin work (so they are well-formed)."""
    b = (secured.b.username, secured.b.password)
    admin = ("_admin", secured.server.admin_password)
    role_id = next(
        r["id"]
        for r in http.get("/api/3.0/mlflow/roles/list", params={"workspace": secured.a.username}, auth=admin).json()[
            "roles"
        ]
        if r["name"] == "testbed-tenant"
    )
    calls = [
        ("GET", "/api/2.0/mlflow/users/get", {"params": {"username": secured.a.username}}),
        (
            "PATCH",
            "/api/2.0/mlflow/users/update-password",
            {"json": {"username": secured.a.username, "password": "stolen-password-123"}},
        ),
        ("PATCH", "/api/2.0/mlflow/users/update-admin", {"json": {"username": secured.b.username, "is_admin": True}}),
        ("POST", "/api/3.0/mlflow/roles/assign", {"json": {"username": secured.b.username, "role_id": role_id}}),
        ("GET", "/api/3.0/mlflow/roles/list", {"params": {"workspace": secured.a.username}}),
        (
            "POST",
            "/api/3.0/mlflow/users/permissions/grant",
            {
                "json": {
                    "username": secured.b.username,
                    "resource_type": "experiment",
                    "resource_id": secured.a_data.experiment_id,
                    "permission": "READ",
                },
                "headers": {"X-MLFLOW-WORKSPACE": secured.a.username},
            },
        ),
        ("POST", "/api/2.0/mlflow/users/create", {"json": {"username": "intruder", "password": "intruder-password-1"}}),
        ("POST", "/api/3.0/mlflow/workspaces", {"json": {"name": "intruder"}}),
        ("DELETE", f"/api/3.0/mlflow/workspaces/{secured.a.username}", {}),
        ("DELETE", "/api/2.0/mlflow/users/delete", {"json": {"username": secured.a.username}}),
    ]
    refused = [(m, p, http.request(m, p, auth=b, **kw).status_code) for m, p, kw in calls]
    assert all(status == 403 for _, _, status in refused), refused
    assert http.get("/api/2.0/mlflow/users/get", params={"username": secured.a.username}, auth=admin).status_code == 200
    assert http.get("/api/2.0/mlflow/users/current", auth=(secured.a.username, secured.a.password)).status_code == 200


def test_unauthenticated_and_wrong_password_are_refused_everywhere(secured):
    """401 on every route (public: /health and server-info, which hold no tenant data)."""
    public = ("/health", "/server-info")
    # A wrong password for a real user costs the server a scrypt check (~90 ms): GET routes suffice there.
    for auth, methods in (
        (None, None),
        (("nobody", "whatever-password"), None),
        ((secured.a.username, "wrong-password-0000"), frozenset({"GET"})),
    ):
        outcomes = sweep(secured.url, secured.a_data, auth=auth, workspace=secured.a.workspace, methods=methods)
        wrong = [
            (o.route.method, o.route.path, o.status)
            for o in outcomes
            if o.status != 401 and not o.route.path.endswith(public)
        ]
        assert not wrong, wrong
        assert not [o.route.path for o in outcomes if leaks(o, secured.a_data.leaked_markers())]


@pytest.mark.parametrize("variant", WORKSPACE_VARIANTS)
@pytest.mark.parametrize("with_ids", [True, False], ids=["with-A-ids", "bare"])
def test_sweep_every_route_as_other_tenant(secured, variant, with_ids):
    """Every route MLflow serves, called by B with A's ids (or with none, as a listing would)."""
    a = secured.a_data
    before = secured.a_snapshot()
    outcomes = sweep(
        secured.url,
        a if with_ids else None,
        auth=(secured.b.username, secured.b.password),
        workspace=_workspace(variant, secured.b.workspace, a.tenant),
    )
    assert len(outcomes) > 400
    leaked = [
        (o.route.method, o.route.path, leaks(o, a.leaked_markers()), o.body[:200])
        for o in outcomes
        if leaks(o, a.leaked_markers())
    ]
    assert not leaked, leaked
    assert not [o.route.path for o in outcomes if o.status == TIMED_OUT]
    assert secured.a_snapshot() == before


def test_sweep_every_writing_route_as_operator(secured):
    before = secured.a_snapshot()
    outcomes = sweep(
        secured.url,
        secured.a_data,
        auth=(secured.operator.username, secured.operator.password),
        workspace=secured.a.workspace,
        methods=frozenset({"POST", "PUT", "PATCH", "DELETE"}),
    )
    assert len(outcomes) > 250
    assert secured.a_snapshot() == before


@pytest.mark.parametrize(
    "path",
    [
        "{own_ws}/../{target_ws}/{rest}",  # traversal out of B's own workspace folder
        "{own_ws_only}/{rest_full}",  # A's experiment id under B's workspace prefix
        "{rest_full}",  # no prefix: resolved in the request's workspace
        "%2e%2e/{target_ws}/{rest}",
        "{target_ws}/{rest}",
    ],
)
@pytest.mark.parametrize("variant", WORKSPACE_VARIANTS)
def test_artifact_proxy_paths(secured, http, path, variant):
    """A's artifact cannot be fetched through the proxy under any spelling of its path."""
    a = secured.a_data
    target_ws, rest = a.proxy_artifact_path.split("/", 2)[1], a.proxy_artifact_path.split("/", 2)[2]
    url = "/api/2.0/mlflow-artifacts/artifacts/" + path.format(
        own_ws=f"workspaces/{secured.b.workspace}",
        target_ws=f"workspaces/{target_ws}",
        rest=rest,
        own_ws_only=f"workspaces/{secured.b.workspace}",
        rest_full=rest,
    )
    workspace = _workspace(variant, secured.b.workspace, a.tenant)
    headers = {"X-MLFLOW-WORKSPACE": workspace} if workspace else {}
    response = http.get(url, auth=(secured.b.username, secured.b.password), headers=headers)
    assert response.status_code >= 400 and a.secret not in response.text, (url, response.status_code)


def test_search_pagination_leaks_nothing(secured, http):
    """Page by page (max_results=1): only B's rows, no empty page carrying a token (which would
    count A's hidden rows), and a page token of B's never reaches A's rows."""
    b = (secured.b.username, secured.b.password)
    headers = {"X-MLFLOW-WORKSPACE": secured.b.workspace}
    a = secured.a_data
    searches = [
        ("POST", "/api/2.0/mlflow/experiments/search", "experiments", {}),
        ("GET", "/api/2.0/mlflow/registered-models/search", "registered_models", {}),
        ("GET", "/api/2.0/mlflow/model-versions/search", "model_versions", {}),
        (
            "POST",
            "/api/2.0/mlflow/runs/search",
            "runs",
            {"experiment_ids": [a.experiment_id, secured.b_data.experiment_id]},
        ),
        (
            "POST",
            "/api/2.0/mlflow/logged-models/search",
            "models",
            {"experiment_ids": [a.experiment_id, secured.b_data.experiment_id]},
        ),
    ]
    for method, path, key, extra in searches:
        token, pages, rows = None, 0, []
        while pages < 200:
            args = {**extra, "max_results": 1, **({"page_token": token} if token else {})}
            kwargs = {"json": args} if method == "POST" else {"params": args}
            response = http.request(method, path, auth=b, headers=headers, **kwargs)
            assert response.status_code == 200, (path, response.text[:200])
            body = response.json()
            page = body.get(key, [])
            pages += 1
            token = body.get("next_page_token")
            assert page or not token, f"{path}: empty page with a next_page_token"
            rows += page
            # By content and unguessable ids: B may own same-named copies in its own workspace.
            assert not [m for m in (a.secret, a.run_id, a.logged_model_id, a.trace_id) if m in response.text]
            assert a.experiment_id not in {row.get("experiment_id") for row in page if key == "experiments"}
            if token:
                _assert_token_is_opaque_offset(token, a)
            else:
                break
        assert rows, path  # B sees its own data


def _assert_token_is_opaque_offset(token: str, a) -> None:
    """MLflow's tokens are base64 JSON (an offset, sometimes the query); none may carry A's data."""
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4)).decode(errors="replace")
    except ValueError:
        decoded = token
    assert not [m for m in a.leaked_markers() if m in decoded], decoded


def test_route_list_is_complete_enough():
    """The sweep really covers every family named in the brief (guards the route discovery)."""
    paths = {r.path for r in all_routes()}
    for family in (
        "/api/2.0/mlflow/experiments/search",
        "/api/2.0/mlflow/runs/search",
        "/graphql",
        "/api/2.0/mlflow/logged-models/search",
        "/api/3.0/mlflow/traces/search",
        "/api/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>",
        "/get-artifact",
        "/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>",
        "/ajax-api/2.0/mlflow/runs/search",
        "/api/2.0/mlflow/registered-models/alias",
        "/api/3.0/mlflow/datasets/search",
        "/api/2.0/mlflow/users/list",
        "/api/3.0/mlflow/roles/assign",
        "/api/3.0/mlflow/workspaces",
        "/model-versions/get-artifact",
        "/ajax-api/3.0/mlflow/get-trace-artifact",
        "/api/3.0/mlflow/mcp-servers",
        "/api/2.0/mlflow/webhooks",
        "/api/3.0/mlflow/scorers/list",
    ):
        assert family in paths, family


def test_no_roster_of_other_tenants(secured, http):
    """B learns no other identity: not A's username, not the operator's, not their roles or grants."""
    b = (secured.b.username, secured.b.password)
    others = (secured.a.username, secured.operator.username)
    calls = [
        ("/api/2.0/mlflow/users/list", {}),
        ("/ajax-api/2.0/mlflow/users/list", {}),
        ("/api/3.0/mlflow/users/permissions/list", {"username": secured.a.username}),
        ("/api/3.0/mlflow/users/roles/list", {"username": secured.a.username}),
        (
            "/api/3.0/mlflow/users/permissions/get",
            {
                "username": secured.a.username,
                "resource_type": "experiment",
                "resource_id": secured.a_data.experiment_id,
            },
        ),
        ("/api/3.0/mlflow/roles/list", {}),
        ("/api/3.0/mlflow/roles/list", {"workspace": secured.a.username}),
        ("/api/3.0/mlflow/users/current/permissions", {}),
    ]
    calls += [
        (path, {"role_id": role_id})
        for role_id in range(1, 13)
        for path in (
            "/api/3.0/mlflow/roles/get",
            "/api/3.0/mlflow/roles/users/list",
            "/api/3.0/mlflow/roles/permissions/list",
        )
    ]
    seen = []
    for workspace in (secured.b.workspace, secured.a.workspace, None):
        headers = {"X-MLFLOW-WORKSPACE": workspace} if workspace else {}
        for path, params in calls:
            response = http.get(path, params=params, auth=b, headers=headers)
            sent = json.dumps(params)
            seen += [(workspace, path, params, name) for name in others if name in response.text and name not in sent]
    assert not seen, seen


def test_server_wide_features_are_the_admins(secured, http):
    """The Assistant's server-wide config and tools, demo data and the AI gateway: not for tenants."""
    b = (secured.b.username, secured.b.password)
    headers = {"X-MLFLOW-WORKSPACE": secured.b.workspace}
    for method, path, body in [
        ("GET", "/ajax-api/3.0/mlflow/assistant/config", None),
        ("PUT", "/ajax-api/3.0/mlflow/assistant/config", {"providers": {}}),
        ("GET", "/ajax-api/3.0/mlflow/assistant/providers", None),
        ("POST", "/ajax-api/3.0/mlflow/assistant/message", {"message": "hi"}),
        ("POST", "/ajax-api/3.0/mlflow/assistant/skills/install", {}),
        ("POST", "/ajax-api/3.0/mlflow/demo/generate", {}),
        ("POST", "/ajax-api/3.0/mlflow/demo/delete", {}),
    ]:
        response = http.request(method, path, auth=b, headers=headers, json=body)
        assert response.status_code == 403, (method, path, response.status_code, response.text[:200])
    admin = ("_admin", secured.server.admin_password)
    assert http.get("/ajax-api/3.0/mlflow/assistant/config", auth=admin).status_code == 200
    for method, path in [
        ("GET", "/ajax-api/3.0/mlflow/gateway/supported-providers"),
        ("POST", "/gateway/mlflow/v1/chat/completions"),
        ("GET", "/gateway/mlflow/v1/models"),
    ]:
        response = http.request(method, path, auth=b, headers=headers, json={"model": "x", "messages": []})
        assert response.status_code in (403, 501), (path, response.status_code, response.text[:200])
