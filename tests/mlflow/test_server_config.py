"""The rendered auth config and server argv/env, both modes (pure; no server)."""

from __future__ import annotations

import configparser
import stat

import pytest

from testbed import mlflow_server as sc
from operators.mlflow_access.provision import MlflowCredentials, check_tenant_id


def _parse(ini: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read_string(ini)
    return parser["mlflow"]


def test_ini_denies_by_default_and_names_no_password():
    section = _parse(sc.render_auth_ini("sqlite:////state/mlflow/auth.db"))
    assert section["default_permission"] == "NO_PERMISSIONS"
    assert section["grant_default_workspace_access"] == "false"
    assert section["database_uri"] == "sqlite:////state/mlflow/auth.db"
    assert section["admin_username"] == sc.ADMIN_USERNAME
    assert "admin_password" not in section
    assert section["authorization_function"] == "testbed.mlflow_guard:authenticate"


def test_ini_is_read_by_mlflow_itself(tmp_path, monkeypatch):
    """MLflow's own reader (mlflow.server.auth.config) gets what we meant, '%' in a password included."""
    from mlflow.server.auth.config import read_auth_config
    from mlflow.server.auth.permissions import NO_PERMISSIONS

    uri = "postgresql://testbed:p%40ss%25word@db:5432/mlflow_auth?sslmode=require"
    path = tmp_path / "basic_auth.ini"
    path.write_text(sc.render_auth_ini(uri, auth_cache_ttl_seconds=7))
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    config = read_auth_config()
    assert config.default_permission == NO_PERMISSIONS.name
    assert config.database_uri == uri
    assert config.admin_username == sc.ADMIN_USERNAME and config.admin_password is None
    assert config.grant_default_workspace_access is False
    assert config.auth_cache_ttl_seconds == 7


def test_ini_rejects_a_second_line():
    with pytest.raises(ValueError):
        sc.render_auth_ini("sqlite:///x.db\nadmin_password = oops")


def test_local_mode(tmp_path):
    auth = sc.local_server_auth(tmp_path / "mlflow", "a" * 20, "flask-key")
    assert auth.argv == (
        "--app-name",
        "testbed-basic-auth",  # testbed/mlflow_app.py
        "--enable-workspaces",
        "--uvicorn-opts",
        "--http h11 --loop asyncio",  # tests/mlflow/test_request_head_limit.py holds what it is for
    )
    assert auth.ini_path == tmp_path / "mlflow" / "basic_auth.ini"
    assert _parse(auth.ini)["admin_password"] == "a" * 20  # in the 0600 file, not in the server's environment
    assert _parse(auth.ini)["database_uri"] == f"sqlite:///{tmp_path / 'mlflow' / 'auth.db'}"
    assert auth.env == {
        "MLFLOW_AUTH_CONFIG_PATH": str(auth.ini_path),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-key",
        "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true",
        "MLFLOW_RBAC_SEED_DEFAULT_ROLES": "false",
        "MLFLOW_SERVER_ENABLE_GRAPHQL_AUTH": "true",
        "MLFLOW_ENABLE_AI_GATEWAY": "false",
    }
    path = auth.write_ini()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "a" * 20 not in repr(auth) and "flask-key" not in repr(auth)


def test_cluster_mode():
    uri = "postgresql://testbed:secret@platform-db:5432/mlflow_auth"
    auth = sc.cluster_server_auth(uri, "b" * 20, "flask-key")
    assert auth.secret_name == "mlflow-auth"
    assert set(auth.secret_data) == {"basic_auth.ini", "admin-password", "flask-secret-key"}
    assert _parse(auth.secret_data["basic_auth.ini"])["database_uri"] == uri
    assert auth.env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow-auth/basic_auth.ini"
    assert auth.secret_env == {
        "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret-key",
    }
    assert "secret" not in " ".join(auth.argv) + str(auth.env)
    assert "b" * 20 not in repr(auth)
    assert _parse(auth.secret_data["basic_auth.ini"])["authorization_function"] == "testbed_mlflow_guard:authenticate"
    assert auth.guard_configmap == "mlflow-auth-guard" and auth.env["PYTHONPATH"] == "/opt/testbed-mlflow"
    assert "def authenticate" in auth.guard_data["testbed_mlflow_guard.py"]


def test_guard_module_stands_alone():
    """The cluster mounts guard.py as a top-level module: it may import the standard library, mlflow, and what
    MLflow itself requires (flask, cachetools; werkzeug through flask: read from the installed metadata)."""
    import ast
    import importlib.metadata as metadata
    import re
    import sys

    tree = ast.parse(sc.guard_source())
    roots = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    roots |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    required = {
        re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower().replace("-", "_")
        for dist in ("mlflow", "mlflow-skinny", "flask")
        for r in metadata.requires(dist) or []
        if "extra ==" not in r
    }
    outside = roots - set(sys.stdlib_module_names) - {"__future__", "mlflow"} - required
    assert not outside, f"the guard imports {sorted(outside)}, which the MLflow image need not have"
    assert "operators" not in roots and "testbed" not in roots


@pytest.mark.parametrize("bad", ["short", ""])
def test_weak_admin_password_is_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        sc.local_server_auth(tmp_path, bad, "k")


def test_reserved_names_cannot_be_tenants():
    for tenant in ("default", "api", "ajax-api", "workspaces", "static-files", "_admin", "A-B", "x"):
        with pytest.raises(ValueError):
            check_tenant_id(tenant)
    assert check_tenant_id("hanbit-motors") == "hanbit-motors"
    # The admin and operator usernames can never be a tenant id (no underscore in a tenant id).
    for name in (sc.ADMIN_USERNAME, sc.OPERATOR_USERNAME):
        with pytest.raises(ValueError):
            check_tenant_id(name)


def test_job_env_holds_the_tenant_identity_only():
    creds = MlflowCredentials("tenant-a", "p" * 43, "tenant-a")
    assert creds.job_env() == {
        "MLFLOW_TRACKING_USERNAME": "tenant-a",
        "MLFLOW_TRACKING_PASSWORD": "p" * 43,
        "MLFLOW_WORKSPACE": "tenant-a",
    }
    assert "p" * 43 not in repr(creds) and "p" * 43 not in str(creds)
