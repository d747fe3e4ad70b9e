"""MLflow access control: one MLflow identity and workspace per tenant, a read-only operator.

``testbed.mlflow_server`` (the core) renders how ``mlflow server`` starts (auth ini, argv, env) in local and cluster
mode; ``provision`` creates and rotates the identities through the server's admin API.
"""

from operators.mlflow_access.provision import (
    OPERATOR_ROLE,
    TENANT_ROLE,
    MlflowAccessAdmin,
    MlflowAccessError,
    MlflowCredentials,
    check_tenant_id,
    new_password,
)
from testbed.mlflow_server import (
    ADMIN_USERNAME,
    OPERATOR_USERNAME,
    ClusterServerAuth,
    LocalServerAuth,
    cluster_server_auth,
    local_server_auth,
    new_secret,
    render_auth_ini,
)

__all__ = [
    "ADMIN_USERNAME",
    "OPERATOR_ROLE",
    "OPERATOR_USERNAME",
    "TENANT_ROLE",
    "ClusterServerAuth",
    "LocalServerAuth",
    "MlflowAccessAdmin",
    "MlflowAccessError",
    "MlflowCredentials",
    "check_tenant_id",
    "cluster_server_auth",
    "local_server_auth",
    "new_password",
    "new_secret",
    "render_auth_ini",
]
