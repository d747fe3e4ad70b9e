"""How the MLflow tracking server is started with access control, in both modes (pure functions).

MLflow's own basic-auth app (``--app-name testbed-basic-auth``: ``mlflow_app.py`` serves MLflow's ``basic-auth``
app with two per-request layers made plain) with workspaces (``--enable-workspaces``):
one workspace per tenant, ``default_permission = NO_PERMISSIONS``, the fail-closed net on, no
grant ever reaching the ``default`` workspace, and ``mlflow_guard.py`` as the authorization function. The lead wires :func:`local_server_auth` into
``embedded/components.py`` and :func:`cluster_server_auth` into ``infra/addons/mlflow.py``.

Secrets (the admin password, the Flask CSRF key) travel as environment variables, never in argv;
in cluster mode the ini itself holds the auth database URI (with its password), so it is a Secret.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

# Usernames that cannot collide with a tenant id (tenant ids match testbed.config.SLUG, which has
# no underscore). A tenant's MLflow user is its id; its workspace has the same name.
ADMIN_USERNAME = "_admin"
OPERATOR_USERNAME = "_program-office"

AUTH_APP_NAME = "testbed-basic-auth"  # mlflow_app.py: MLflow's own app (below), two per-request layers made plain
MLFLOW_AUTH_APP_NAME = "basic-auth"  # MLflow's own basic-auth app (entry point mlflow.app of the mlflow package)
DEFAULT_PERMISSION = "NO_PERMISSIONS"  # mlflow.server.auth.permissions.NO_PERMISSIONS.name
# Credential checks cost one scrypt hash (~90 ms) per request without the cache; with it, at most
# once per (user, password) per TTL per worker. A rotated password stays valid on *other* workers
# or replicas for at most this long (the worker handling the rotation forgets it at once).
DEFAULT_AUTH_CACHE_TTL_SECONDS = 30

# Environment names MLflow reads (mlflow.environment_variables / mlflow.server.auth).
ENV_AUTH_CONFIG_PATH = "MLFLOW_AUTH_CONFIG_PATH"
ENV_ADMIN_PASSWORD = "MLFLOW_AUTH_ADMIN_PASSWORD"  # bootstrap only: ignored once the admin exists
ENV_FLASK_SECRET_KEY = "MLFLOW_FLASK_SERVER_SECRET_KEY"  # CSRF key; the same on every replica
ENV_FAIL_CLOSED = "MLFLOW_BASIC_AUTH_FAIL_CLOSED"  # a route with no validator is denied
ENV_SEED_DEFAULT_ROLES = "MLFLOW_RBAC_SEED_DEFAULT_ROLES"  # we create our own roles
ENV_GRAPHQL_AUTH = "MLFLOW_SERVER_ENABLE_GRAPHQL_AUTH"  # default true; pinned so it cannot drift
ENV_AI_GATEWAY = "MLFLOW_ENABLE_AI_GATEWAY"  # off: no server-side calls to tenant-chosen LLM providers

# Cluster mode: one Secret in the platform namespace holds all three; the ini is mounted as a file.
CLUSTER_AUTH_SECRET = "mlflow-auth"
CLUSTER_SECRET_KEY_INI = "basic_auth.ini"
CLUSTER_SECRET_KEY_ADMIN_PASSWORD = "admin-password"
CLUSTER_SECRET_KEY_FLASK = "flask-secret-key"
CLUSTER_AUTH_MOUNT_DIR = "/etc/mlflow-auth"
CLUSTER_AUTH_DB = "mlflow_auth"  # a PostgreSQL database next to MLflow's own ("mlflow")

# MLflow's server runs under uvicorn's command line, whose "auto" takes httptools and uvloop wherever they are installed
# (they are: the control plane's HTTP parts). uvicorn's httptools protocol reads a request head of any length, before
# MLflow's authentication, where h11 refuses one over 16 KiB: MLflow's server keeps h11 and asyncio's loop.
UVICORN_PARTS: tuple[str, ...] = ("--uvicorn-opts", "--http h11 --loop asyncio")
SERVER_ARGV: tuple[str, ...] = ("--app-name", AUTH_APP_NAME, "--enable-workspaces", *UVICORN_PARTS)

# MLflow's basic-auth authentication plus one refusal (mlflow_guard.py: no user roster for non-admins).
# Locally the server imports it from this package; in a cluster, from a ConfigMap-mounted file.
LOCAL_AUTHORIZATION_FUNCTION = "testbed.mlflow_guard:authenticate"
CLUSTER_GUARD_MODULE = "testbed_mlflow_guard"
CLUSTER_GUARD_CONFIGMAP = "mlflow-auth-guard"
CLUSTER_GUARD_MOUNT_DIR = "/opt/testbed-mlflow"
CLUSTER_AUTHORIZATION_FUNCTION = f"{CLUSTER_GUARD_MODULE}:authenticate"


def guard_source() -> str:
    """mlflow_guard.py's text, for the cluster's ConfigMap (file ``testbed_mlflow_guard.py``)."""
    return (Path(__file__).parent / "mlflow_guard.py").read_text()


def render_auth_ini(
    database_uri: str,
    *,
    admin_username: str = ADMIN_USERNAME,
    authorization_function: str = LOCAL_AUTHORIZATION_FUNCTION,
    auth_cache_ttl_seconds: int = DEFAULT_AUTH_CACHE_TTL_SECONDS,
) -> str:
    """The auth config file (``MLFLOW_AUTH_CONFIG_PATH``). No password: that comes from the env."""
    if not database_uri or "\n" in database_uri:
        raise ValueError("database_uri must be a single non-empty line")
    if auth_cache_ttl_seconds < 0:
        raise ValueError("auth_cache_ttl_seconds must be >= 0")
    # configparser interpolates '%': a URI-encoded password ("%40") must be written as "%%40".
    uri = database_uri.replace("%", "%%")
    return "\n".join(
        [
            "# Rendered by testbed.mlflow_server; do not edit by hand.",
            "[mlflow]",
            f"default_permission = {DEFAULT_PERMISSION}",
            f"database_uri = {uri}",
            f"admin_username = {admin_username}",
            f"authorization_function = {authorization_function}",
            "grant_default_workspace_access = false",
            f"auth_cache_ttl_seconds = {auth_cache_ttl_seconds}",
            "auth_cache_max_size = 10000",
            "",
        ]
    )


def new_secret() -> str:
    """A random admin password or Flask key (43 URL-safe characters; MLflow wants >= 12)."""
    return secrets.token_urlsafe(32)


_HARDENING_ENV = {
    ENV_FAIL_CLOSED: "true",
    ENV_SEED_DEFAULT_ROLES: "false",
    ENV_GRAPHQL_AUTH: "true",
    ENV_AI_GATEWAY: "false",
}


def _server_env(admin_password: str, flask_secret_key: str) -> dict[str, str]:
    if len(admin_password) < 12:
        raise ValueError("the MLflow admin password must be at least 12 characters")
    if not flask_secret_key:
        raise ValueError("flask_secret_key must not be empty")
    return {
        ENV_ADMIN_PASSWORD: admin_password,
        ENV_FLASK_SECRET_KEY: flask_secret_key,
        **_HARDENING_ENV,
    }


@dataclass(frozen=True)
class LocalServerAuth:
    """What ``mlflow server`` needs locally: write ``ini`` to ``ini_path`` (0600), add ``argv``, set ``env``."""

    ini_path: Path
    ini: str = field(repr=False)
    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)  # holds the Flask key (the admin password is in the ini)

    def write_ini(self) -> Path:
        self.ini_path.parent.mkdir(parents=True, exist_ok=True)
        self.ini_path.touch(mode=0o600, exist_ok=True)
        self.ini_path.chmod(0o600)
        self.ini_path.write_text(self.ini)
        return self.ini_path


def local_server_auth(
    mlflow_home: Path,
    admin_password: str,
    flask_secret_key: str,
    *,
    auth_cache_ttl_seconds: int = DEFAULT_AUTH_CACHE_TTL_SECONDS,
) -> LocalServerAuth:
    """Local mode: the auth DB is SQLite next to MLflow's own (``<mlflow_home>/auth.db``)."""
    mlflow_home = Path(mlflow_home)
    ini_path = mlflow_home / "basic_auth.ini"
    ini = render_auth_ini(f"sqlite:///{mlflow_home / 'auth.db'}", auth_cache_ttl_seconds=auth_cache_ttl_seconds)
    # the admin password goes into the 0600 ini (MLflow reads ``admin_password`` there when the variable is unset,
    # mlflow/server/auth/config.py), never into the server's environment, which /proc shows
    server_env = _server_env(admin_password, flask_secret_key)
    ini += f"admin_password = {server_env.pop(ENV_ADMIN_PASSWORD).replace('%', '%%')}\n"
    env = {ENV_AUTH_CONFIG_PATH: str(ini_path), **server_env}
    return LocalServerAuth(ini_path=ini_path, ini=ini, argv=SERVER_ARGV, env=env)


@dataclass(frozen=True)
class ClusterServerAuth:
    """What the MLflow Deployment needs: a Secret and a ConfigMap, their mounts, argv and env.

    ``secret_data`` goes into Secret ``secret_name`` (string_data), mounted read-only at
    ``mount_dir``; ``guard_data`` into ConfigMap ``guard_configmap`` mounted at ``guard_mount_dir``;
    ``secret_env`` maps an env name to the Secret key it is read from (``secretKeyRef``); ``env``
    are plain values (PYTHONPATH included, so the server imports the guard).
    """

    secret_name: str
    secret_data: dict[str, str] = field(repr=False)
    mount_dir: str
    guard_configmap: str
    guard_data: dict[str, str] = field(repr=False)
    guard_mount_dir: str
    argv: tuple[str, ...]
    env: dict[str, str]
    secret_env: dict[str, str]


def cluster_server_auth(
    auth_database_uri: str,
    admin_password: str,
    flask_secret_key: str,
    *,
    auth_cache_ttl_seconds: int = DEFAULT_AUTH_CACHE_TTL_SECONDS,
) -> ClusterServerAuth:
    """Cluster mode: the auth DB on PostgreSQL (database ``mlflow_auth``), the ini in a Secret.

    Call it inside ``pulumi.Output.all(uri, password, key).apply(...)`` so the values stay secret.
    """
    _server_env(admin_password, flask_secret_key)  # validates
    return ClusterServerAuth(
        secret_name=CLUSTER_AUTH_SECRET,
        secret_data={
            CLUSTER_SECRET_KEY_INI: render_auth_ini(
                auth_database_uri,
                authorization_function=CLUSTER_AUTHORIZATION_FUNCTION,
                auth_cache_ttl_seconds=auth_cache_ttl_seconds,
            ),
            CLUSTER_SECRET_KEY_ADMIN_PASSWORD: admin_password,
            CLUSTER_SECRET_KEY_FLASK: flask_secret_key,
        },
        mount_dir=CLUSTER_AUTH_MOUNT_DIR,
        guard_configmap=CLUSTER_GUARD_CONFIGMAP,
        guard_data={f"{CLUSTER_GUARD_MODULE}.py": guard_source()},
        guard_mount_dir=CLUSTER_GUARD_MOUNT_DIR,
        argv=SERVER_ARGV,
        env={
            ENV_AUTH_CONFIG_PATH: f"{CLUSTER_AUTH_MOUNT_DIR}/{CLUSTER_SECRET_KEY_INI}",
            "PYTHONPATH": CLUSTER_GUARD_MOUNT_DIR,
            **_HARDENING_ENV,
        },
        secret_env={
            ENV_ADMIN_PASSWORD: CLUSTER_SECRET_KEY_ADMIN_PASSWORD,
            ENV_FLASK_SECRET_KEY: CLUSTER_SECRET_KEY_FLASK,
        },
    )
