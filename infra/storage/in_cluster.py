"""MLflow storage inside the cluster: a PostgreSQL StatefulSet and a MinIO StatefulSet (ClusterIP only)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.k8s import child, meta
from infra.naming import OBJECT_STORE, POSTGRES, labels
from infra.storage import (
    ARTIFACT_BUCKET,
    TENANTS_PREFIX,
    DB_SECRET,
    DB_USER,
    MLFLOW_DB,
    MlflowStorage,
    database_init_job,
    database_secret,
    password,
    secret_env,
)
from testbed.versions import IMAGES

POSTGRES_PORT = 5432
MINIO_PORT = 9000
OBJECT_STORE_SECRET = "object-store"


def stateful_service(
    name: str,
    parent: pulumi.Resource,
    ns: pulumi.Input[str],
    component: str,
    image: str,
    port: int,
    env: list[k8s.core.v1.EnvVarArgs],
    mount: str,
    storage: str,
    args: list[str] | None = None,
    probe: k8s.core.v1.ProbeArgs | None = None,
    depends_on: list[pulumi.Resource] | None = None,
) -> k8s.apps.v1.StatefulSet:
    """One replica of a stateful server with its volume, behind a ClusterIP Service of the same name."""
    selector = {"app.kubernetes.io/name": component}
    service = k8s.core.v1.Service(
        f"{name}-svc",
        metadata=meta(component, ns, labels(component)),
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ClusterIP",
            selector=selector,
            ports=[k8s.core.v1.ServicePortArgs(name="main", port=port, target_port=port)],
        ),
        opts=child(parent),
    )
    container = k8s.core.v1.ContainerArgs(
        name=component,
        image=image,
        args=args,
        env=env,
        ports=[k8s.core.v1.ContainerPortArgs(name="main", container_port=port)],
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name="data", mount_path=mount)],
        readiness_probe=probe,
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "250m", "memory": "512Mi"}, limits={"memory": "2Gi"}
        ),
    )
    return k8s.apps.v1.StatefulSet(
        name,
        metadata=meta(component, ns, labels(component)),
        spec=k8s.apps.v1.StatefulSetSpecArgs(
            service_name=component,
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=meta(component, labels=labels(component)), spec=k8s.core.v1.PodSpecArgs(containers=[container])
            ),
            volume_claim_templates=[
                k8s.core.v1.PersistentVolumeClaimArgs(
                    metadata=meta("data"),
                    spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                        access_modes=["ReadWriteOnce"],
                        resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": storage}),
                    ),
                )
            ],
        ),
        opts=child(parent, depends_on=[service, *(depends_on or [])]),
    )


class InClusterMlflowStorage(pulumi.ComponentResource):
    """PostgreSQL and MinIO StatefulSets with generated credentials kept in Secrets."""

    def __init__(self, name: str, ns: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:storage:InClusterMlflow", name, None, opts)
        db_password = password(f"{name}-db", self)
        db_secret, control_plane_uri, mlflow_auth_uri = database_secret(
            f"{name}-db", self, ns, POSTGRES, POSTGRES_PORT, db_password.result
        )
        postgres = stateful_service(
            f"{name}-postgres",
            self,
            ns,
            POSTGRES,
            IMAGES["postgres"].ref,
            POSTGRES_PORT,
            env=[
                k8s.core.v1.EnvVarArgs(name="POSTGRES_USER", value=DB_USER),
                k8s.core.v1.EnvVarArgs(name="POSTGRES_DB", value=MLFLOW_DB),
                k8s.core.v1.EnvVarArgs(name="PGDATA", value="/var/lib/postgresql/data/pgdata"),
                secret_env("POSTGRES_PASSWORD", DB_SECRET, "password"),
            ],
            mount="/var/lib/postgresql/data",
            storage="50Gi",
            probe=k8s.core.v1.ProbeArgs(
                exec_=k8s.core.v1.ExecActionArgs(command=["pg_isready", "-U", DB_USER]), period_seconds=10
            ),
            depends_on=[db_secret],
        )

        store_user, store_password = password(f"{name}-store-user", self), password(f"{name}-store", self)
        store_secret = k8s.core.v1.Secret(
            f"{name}-store",
            metadata=meta(OBJECT_STORE_SECRET, ns, labels(OBJECT_STORE)),
            type="Opaque",
            string_data={"AWS_ACCESS_KEY_ID": store_user.result, "AWS_SECRET_ACCESS_KEY": store_password.result},
            opts=child(self),
        )
        creds = [
            secret_env("MINIO_ROOT_USER", OBJECT_STORE_SECRET, "AWS_ACCESS_KEY_ID"),
            secret_env("MINIO_ROOT_PASSWORD", OBJECT_STORE_SECRET, "AWS_SECRET_ACCESS_KEY"),
        ]
        minio = stateful_service(
            f"{name}-minio",
            self,
            ns,
            OBJECT_STORE,
            IMAGES["minio"].ref,
            MINIO_PORT,
            env=creds,
            mount="/data",
            storage="200Gi",
            args=["server", "/data"],
            probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/minio/health/ready", port=MINIO_PORT)
            ),
            depends_on=[store_secret],
        )
        endpoint = f"http://{OBJECT_STORE}:{MINIO_PORT}"
        store_credentials = [
            secret_env("AWS_ACCESS_KEY_ID", OBJECT_STORE_SECRET, "AWS_ACCESS_KEY_ID"),
            secret_env("AWS_SECRET_ACCESS_KEY", OBJECT_STORE_SECRET, "AWS_SECRET_ACCESS_KEY"),
        ]
        bucket = k8s.batch.v1.Job(
            f"{name}-bucket",
            metadata=meta("object-store-bucket", ns, labels("object-store-bucket")),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=10,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=meta("object-store-bucket", labels=labels("object-store-bucket")),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="OnFailure",
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="mc",
                                image=IMAGES["minio-client"].ref,
                                command=[
                                    "sh",
                                    "-c",
                                    f'mc alias set store {endpoint} "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" && '
                                    f"mc mb --ignore-existing store/{ARTIFACT_BUCKET}",
                                ],
                                env=[*creds, k8s.core.v1.EnvVarArgs(name="MC_CONFIG_DIR", value="/tmp/mc")],
                            )
                        ],
                    ),
                ),
            ),
            opts=child(self, depends_on=[minio]),
        )
        init = database_init_job(f"{name}-db-init", self, ns, IMAGES["postgres"].ref, [db_secret, postgres])

        self.storage = MlflowStorage(
            db_secret=DB_SECRET,
            artifacts_destination=f"s3://{ARTIFACT_BUCKET}/artifacts",
            control_plane_db_uri=control_plane_uri,
            mlflow_auth_db_uri=mlflow_auth_uri,
            job_storage=f"s3://{ARTIFACT_BUCKET}/{TENANTS_PREFIX}",
            env=[k8s.core.v1.EnvVarArgs(name="MLFLOW_S3_ENDPOINT_URL", value=endpoint), *store_credentials],
            ready=[db_secret, postgres, minio, bucket, init],
            # The control plane reaches the tenants' storage with the store's own credentials (botocore reads
            # AWS_ENDPOINT_URL); the tenants' jobs get no identity here: the cluster's operator provides one.
            control_plane_env=[k8s.core.v1.EnvVarArgs(name="AWS_ENDPOINT_URL", value=endpoint), *store_credentials],
        )
        self.register_outputs({})
