"""MLflow's backing stores: a PostgreSQL server and an S3-compatible artifact store.

Each cluster provider picks an implementation (managed on AWS, in-cluster elsewhere); the
platform only sees :class:`MlflowStorage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.k8s import child, meta
from infra.naming import labels

DB_SECRET = "platform-db"
DB_USER = "testbed"
MLFLOW_DB = "mlflow"
CONTROL_PLANE_DB = "testbed"
MLFLOW_AUTH_DB = "mlflow_auth"  # MLflow's users and permissions (testbed.mlflow_server.CLUSTER_AUTH_DB)
ARTIFACT_BUCKET = "mlflow"
# The tenants' storage in the bucket: <bucket>/tenants/<tenant>/{packages,data,jobs} (testbed/storage.py).
TENANTS_PREFIX = "tenants"
# MLflow and the control plane connect through SQLAlchemy, whose bare postgresql:// means psycopg (3) since 2.1; the
# image carries psycopg2 (the postgres extra), so their URIs name it. admin-uri stays a libpq URI (psql, pg_isready).
SQLALCHEMY_SCHEME = "postgresql+psycopg2"


@dataclass
class MlflowStorage:
    """Where MLflow keeps runs and artifacts, as the MLflow server and control plane need it."""

    db_secret: str  # k8s Secret in the platform namespace: mlflow-uri, testbed-uri, admin-uri
    artifacts_destination: pulumi.Input[str]  # s3://bucket/prefix
    control_plane_db_uri: pulumi.Output[str]  # secret; the control plane's SQLAlchemy URL
    mlflow_auth_db_uri: pulumi.Output[str]  # secret; MLflow's auth database (its users and permissions)
    job_storage: pulumi.Input[str]  # the tenants' storage root (s3://bucket/tenants): packages, data, checkpoints
    env: list[k8s.core.v1.EnvVarArgs] = field(default_factory=list)  # extra env for the MLflow server
    service_account_annotations: dict[str, str] = field(default_factory=dict)
    ready: list[pulumi.Resource] = field(default_factory=list)
    control_plane_env: list[k8s.core.v1.EnvVarArgs] = field(default_factory=list)  # to reach job_storage
    # Binds a tenant's job ServiceAccount (tenant id, namespace, name) to an identity that reaches
    # <job_storage>/<tenant>/* and nothing else; None: the cluster's operator provides one (provider: existing).
    tenant_identity: Callable[[str, str, str], None] | None = None


def password(name: str, parent: pulumi.Resource) -> random.RandomPassword:
    """A generated password kept in state as a secret."""
    return random.RandomPassword(name, length=32, special=False, opts=child(parent))


def database_secret(
    name: str,
    parent: pulumi.Resource,
    ns: pulumi.Input[str],
    host: pulumi.Input[str],
    port: pulumi.Input[int],
    secret: pulumi.Input[str],
    query: str = "",
) -> tuple[k8s.core.v1.Secret, pulumi.Output[str], pulumi.Output[str]]:
    """The Secret holding connection URIs for MLflow, the control plane and admin tasks (and the control plane's
    URI, and MLflow's auth database's, which goes into MLflow's auth Secret)."""

    def uri(db: str, scheme: str = SQLALCHEMY_SCHEME) -> pulumi.Output[str]:
        return pulumi.Output.secret(
            pulumi.Output.concat(
                scheme,
                "://",
                DB_USER,
                ":",
                secret,
                "@",
                host,
                ":",
                pulumi.Output.from_input(port).apply(str),
                "/",
                db,
                query,
            )
        )

    secret_object = k8s.core.v1.Secret(
        name,
        metadata=meta(DB_SECRET, ns, labels("platform-db")),
        type="Opaque",
        string_data={
            "mlflow-uri": uri(MLFLOW_DB),
            "testbed-uri": uri(CONTROL_PLANE_DB),
            "admin-uri": uri("postgres", "postgresql"),
            "username": DB_USER,
            "password": secret,
        },
        opts=child(parent),
    )
    return secret_object, uri(CONTROL_PLANE_DB), uri(MLFLOW_AUTH_DB)


def database_init_job(
    name: str, parent: pulumi.Resource, ns: pulumi.Input[str], image: str, depends_on: list[pulumi.Resource]
) -> k8s.batch.v1.Job:
    """A Job creating the control plane's database and MLflow's auth database next to MLflow's (idempotent)."""
    script = 'until pg_isready -d "$ADMIN_URI"; do sleep 5; done' + "".join(
        f' && (psql "$ADMIN_URI" -tAc "SELECT 1 FROM pg_database WHERE datname=\'{db}\'" | grep -q 1 '
        f'|| psql "$ADMIN_URI" -c "CREATE DATABASE {db}")'
        for db in (CONTROL_PLANE_DB, MLFLOW_AUTH_DB)
    )
    container = k8s.core.v1.ContainerArgs(
        name="create-db",
        image=image,
        command=["sh", "-c", script],
        env=[secret_env("ADMIN_URI", DB_SECRET, "admin-uri")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "128Mi"}
        ),
        security_context=restricted_security_context(),
    )
    return k8s.batch.v1.Job(
        name,
        metadata=meta("platform-db-init", ns, labels("platform-db-init")),
        spec=k8s.batch.v1.JobSpecArgs(
            backoff_limit=10,
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=meta("platform-db-init", labels=labels("platform-db-init")),
                spec=k8s.core.v1.PodSpecArgs(restart_policy="OnFailure", containers=[container]),
            ),
        ),
        opts=child(parent, depends_on=depends_on),
    )


def secret_env(name: str, secret: str, key: str) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(
        name=name,
        value_from=k8s.core.v1.EnvVarSourceArgs(secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret, key=key)),
    )


def restricted_security_context(run_as_user: int | None = None) -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        run_as_non_root=run_as_user is not None or None,
        run_as_user=run_as_user,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    )
