"""Tenant and operator identities on MLflow's basic-auth server, through its admin REST API.

Layout, per tenant ``t`` (a ``testbed.config.SLUG``):

- workspace ``t``: everything the tenant's jobs log lives there (experiments, runs, artifacts,
  registered models and their aliases, logged models, traces, prompts); names are unique per
  workspace, so another tenant cannot squat ``t/...`` experiments or ``t.<template>`` models;
- user ``t`` with a random password, holding role ``testbed-tenant`` in workspace ``t``:
  ``(workspace, *, USE)`` (may create) plus ``MANAGE`` on every experiment, registered model and
  prompt of the workspace — including ones it did not create;
- role ``testbed-operator-read`` in workspace ``t``: ``READ`` on the same, held by the program
  office's operator user (``_program-office``), which is not an MLflow admin and so cannot write.

A grant is only ever written in the tenant's own workspace; the ``default`` workspace has none,
so a client that forgets ``MLFLOW_WORKSPACE`` reaches nothing. Every call here is idempotent:
re-running it (control-plane start, rotation) repairs what is missing and changes nothing else.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from testbed.mlflow_server import ADMIN_USERNAME, OPERATOR_USERNAME
from testbed.tenant_exit import MlflowPurged
from testbed.tls import tls_context

TENANT_ROLE = "testbed-tenant"
OPERATOR_ROLE = "testbed-operator-read"
# Top-level resource types a workspace holds; sub-resources (runs, versions, logged models, traces,
# assessments) inherit from their experiment / model when no grant names their own tier.
RESOURCE_TYPES = ("experiment", "registered_model", "prompt")
TENANT_GRANTS = frozenset({("workspace", "*", "USE"), *((t, "*", "MANAGE") for t in RESOURCE_TYPES)})
OPERATOR_GRANTS = frozenset((t, "*", "READ") for t in RESOURCE_TYPES)

_TENANT_ID = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")  # testbed.config.SLUG
# MLflow's reserved workspace names (WorkspaceNameValidator) and its default workspace.
_RESERVED_TENANT_IDS = frozenset({"default", "workspaces", "api", "ajax-api", "static-files"})

ENV_USERNAME = "MLFLOW_TRACKING_USERNAME"
ENV_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
ENV_WORKSPACE = "MLFLOW_WORKSPACE"


class MlflowAccessError(RuntimeError):
    """The MLflow server refused or failed an admin call. The message never holds a password."""


@dataclass(frozen=True)
class MlflowCredentials:
    """One MLflow identity. ``workspace`` is the tenant's; None for the operator (it picks one)."""

    username: str
    password: str = field(repr=False)
    workspace: str | None = None

    def job_env(self) -> dict[str, str]:
        """What a job gets (``MLFLOW_*``, read by the MLflow client itself)."""
        env = {ENV_USERNAME: self.username, ENV_PASSWORD: self.password}
        if self.workspace is not None:
            env[ENV_WORKSPACE] = self.workspace
        return env


def new_password() -> str:
    return secrets.token_urlsafe(32)


def check_tenant_id(tenant: str) -> str:
    if not _TENANT_ID.match(tenant) or tenant in _RESERVED_TENANT_IDS:
        raise ValueError(f"tenant id {tenant!r} cannot name an MLflow user and workspace")
    return tenant


class MlflowAccessAdmin:
    """Admin client of one MLflow server (basic-auth + workspaces). Not thread-safe; cheap to make."""

    def __init__(
        self,
        url: str,
        admin_password: str,
        *,
        admin_username: str = ADMIN_USERNAME,
        operator_username: str = OPERATOR_USERNAME,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = url.rstrip("/")
        self.operator_username = operator_username
        self._http = httpx.Client(
            base_url=self.url,
            auth=(admin_username, admin_password),
            timeout=timeout,
            transport=transport,
            verify=tls_context(),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MlflowAccessAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- identities ------------------------------------------------------------------------
    def ensure_operator(self, password: str | None = None) -> MlflowCredentials:
        """The program office's read-only user (not an MLflow admin: it reads, never writes).

        ``password``: the stored one (re-asserted); None on first provisioning (a random one is
        created and returned). Raises when the user exists and no password was given: call
        :meth:`rotate`. Its read role is added to each tenant workspace by :meth:`ensure_tenant`
        (or :meth:`grant_operator_read` for workspaces made before the operator existed).
        """
        password = self._ensure_user(self.operator_username, password)
        return MlflowCredentials(self.operator_username, password)

    def ensure_tenant(self, tenant: str, password: str | None = None) -> MlflowCredentials:
        """Workspace, user and both roles of ``tenant``; the operator gets read access when it exists.

        ``password``: the one the control plane has stored (re-asserted, which also repairs a
        drifted server); None on first provisioning (a random one is created and returned).
        Raises when the user exists and no password was given: call :meth:`rotate` instead.
        """
        check_tenant_id(tenant)
        self._ensure_workspace(tenant)
        password = self._ensure_user(tenant, password)
        self._ensure_role(tenant, TENANT_ROLE, TENANT_GRANTS, tenant)
        if self._user_exists(self.operator_username):
            self._ensure_role(tenant, OPERATOR_ROLE, OPERATOR_GRANTS, self.operator_username)
        return MlflowCredentials(tenant, password, tenant)

    def grant_operator_read(self, tenants: list[str]) -> None:
        """Give the operator read access in each tenant's workspace (after a late :meth:`ensure_operator`)."""
        for tenant in tenants:
            self._ensure_role(check_tenant_id(tenant), OPERATOR_ROLE, OPERATOR_GRANTS, self.operator_username)

    def rotate(self, username: str) -> MlflowCredentials:
        """Set a new random password for a tenant (or the operator) and return it.

        The old password stops working at once on the worker that handled this call, and on other
        workers/replicas within the auth cache TTL (``testbed.mlflow_server.DEFAULT_AUTH_CACHE_TTL_SECONDS``).
        """
        if username != self.operator_username:
            check_tenant_id(username)
        password = new_password()
        self._call("PATCH", "/api/2.0/mlflow/users/update-password", json={"username": username, "password": password})
        return MlflowCredentials(username, password, None if username == self.operator_username else username)

    def remove_tenant(self, tenant: str) -> None:
        """Delete the tenant's user (its jobs' credentials stop working); its workspace and data stay."""
        check_tenant_id(tenant)
        if self._user_exists(tenant):
            self._call("DELETE", "/api/2.0/mlflow/users/delete", json={"username": tenant})

    def purge_tenant(self, tenant: str) -> MlflowPurged:
        """Remove everything of ``tenant`` from MLflow: artifacts, registered models, then the workspace with its
        experiments, runs, traces, prompts and datasets (``CASCADE``; MLflow drops the workspace's roles with it), and
        its user. Idempotent: a
        purge that failed half-way is finished by running it again; an absent workspace counts nothing."""
        check_tenant_id(tenant)
        purged = MlflowPurged()
        in_workspace = {"X-MLFLOW-WORKSPACE": tenant}
        if self._call("GET", f"/api/3.0/mlflow/workspaces/{tenant}", ok=(200, 404)).status_code == 200:
            experiments = self._pages(
                "POST", "/api/2.0/mlflow/experiments/search", "experiments", in_workspace, view_type="ALL"
            )
            for experiment in experiments:
                purged.runs += len(
                    self._pages(
                        "POST",
                        "/api/2.0/mlflow/runs/search",
                        "runs",
                        in_workspace,
                        experiment_ids=[experiment["experiment_id"]],
                        run_view_type="ALL",
                    )
                )
                location = str(experiment.get("artifact_location") or "")
                if location.startswith("mlflow-artifacts:"):  # the proxied store: the experiment's whole folder
                    proxy = location.removeprefix("mlflow-artifacts:").lstrip("/")
                    self._call("DELETE", f"/api/2.0/mlflow-artifacts/artifacts/{proxy}", headers=in_workspace)
                    purged.artifact_roots += 1
            purged.experiments = len(experiments)
            for model in self._pages(
                "GET", "/api/2.0/mlflow/registered-models/search", "registered_models", in_workspace
            ):
                self._call(
                    "DELETE",
                    "/api/2.0/mlflow/registered-models/delete",
                    json={"name": model["name"]},
                    headers=in_workspace,
                )
                purged.models += 1
            self._call("DELETE", f"/api/3.0/mlflow/workspaces/{tenant}", params={"mode": "CASCADE"}, ok=(200, 204, 404))
            purged.workspace = True
        if self._user_exists(tenant):
            self._call("DELETE", "/api/2.0/mlflow/users/delete", json={"username": tenant})
            purged.user = True
        return purged

    def check(self, credentials: MlflowCredentials) -> bool:
        """Do these credentials log in (and, for a tenant, reach its workspace)?"""
        headers = {"X-MLFLOW-WORKSPACE": credentials.workspace} if credentials.workspace else {}
        response = httpx.get(
            f"{self.url}/api/2.0/mlflow/users/current",
            headers=headers,
            auth=(credentials.username, credentials.password),
            timeout=self._http.timeout,
        )
        return response.status_code == 200

    # -- building blocks -------------------------------------------------------------------
    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201), **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise MlflowAccessError(f"MLflow {method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code not in ok:
            detail = response.text[:300].replace("\n", " ")
            raise MlflowAccessError(f"MLflow {method} {path}: HTTP {response.status_code}: {detail}")
        return response

    def _pages(self, method: str, path: str, key: str, headers: dict[str, str], **body: Any) -> list[dict[str, Any]]:
        """Every item of a paged MLflow search."""
        items: list[dict[str, Any]] = []
        token = None
        while True:
            args = {**body, "max_results": 500, **({"page_token": token} if token else {})}
            kwargs: dict[str, Any] = {"json": args} if method == "POST" else {"params": args}
            answer = self._call(method, path, headers=headers, **kwargs).json()
            items += answer.get(key, [])
            token = answer.get("next_page_token")
            if not token:
                return items

    def _user_exists(self, username: str) -> bool:
        response = self._call("GET", "/api/2.0/mlflow/users/get", params={"username": username}, ok=(200, 404))
        return response.status_code == 200

    def _ensure_user(self, username: str, password: str | None) -> str:
        if self._user_exists(username):
            if password is None:
                raise MlflowAccessError(f"MLflow user {username!r} exists and no password was given; rotate it")
            self._call(
                "PATCH", "/api/2.0/mlflow/users/update-password", json={"username": username, "password": password}
            )
            return password
        password = password or new_password()
        self._call("POST", "/api/2.0/mlflow/users/create", json={"username": username, "password": password})
        return password

    def _ensure_workspace(self, name: str) -> None:
        response = self._call("GET", f"/api/3.0/mlflow/workspaces/{name}", ok=(200, 404))
        if response.status_code == 404:
            self._call(
                "POST",
                "/api/3.0/mlflow/workspaces",
                json={"name": name, "description": f"testbed tenant {name}"},
                ok=(200, 201, 409),
            )

    def _ensure_role(
        self, workspace: str, role_name: str, grants: frozenset[tuple[str, str, str]], username: str
    ) -> None:
        roles = self._call("GET", "/api/3.0/mlflow/roles/list", params={"workspace": workspace}).json().get("roles", [])
        role = next((r for r in roles if r["name"] == role_name), None)
        if role is None:
            role = self._call(
                "POST", "/api/3.0/mlflow/roles/create", json={"workspace": workspace, "name": role_name}
            ).json()["role"]
        role_id = int(role["id"])
        present = {
            (p["resource_type"], p["resource_pattern"], p["permission"]): p
            for p in self._call("GET", "/api/3.0/mlflow/roles/permissions/list", params={"role_id": str(role_id)})
            .json()
            .get("role_permissions", [])
        }
        for extra in set(present) - grants:  # a grant someone added by hand is taken away
            self._call(
                "DELETE",
                "/api/3.0/mlflow/roles/permissions/remove",
                json={"role_permission_id": int(present[extra]["id"])},
            )
        for resource_type, pattern, permission in sorted(grants - set(present)):
            self._call(
                "POST",
                "/api/3.0/mlflow/roles/permissions/add",
                json={
                    "role_id": role_id,
                    "resource_type": resource_type,
                    "resource_pattern": pattern,
                    "permission": permission,
                },
            )
        assigned = self._call("GET", "/api/3.0/mlflow/users/roles/list", params={"username": username}).json()
        if not any(int(r["id"]) == role_id for r in assigned.get("roles", [])):
            self._call("POST", "/api/3.0/mlflow/roles/assign", json={"username": username, "role_id": role_id})
