"""MLflow storage on AWS: RDS PostgreSQL and an S3 bucket reached through EKS Pod Identity.

The same bucket holds the tenants' storage under ``tenants/``: the control plane's role reaches all of it (uploads,
listings), each tenant's job role only ``tenants/<tenant>/`` (:meth:`AwsMlflowStorage.tenant_identity`).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.k8s import child
from infra.naming import CONTROL_PLANE, MLFLOW, PLATFORM_NS
from infra.providers.aws_iam import pod_role, policy_document, prefix_policy
from infra.storage import (
    DB_SECRET,
    DB_USER,
    MLFLOW_DB,
    TENANTS_PREFIX,
    MlflowStorage,
    database_init_job,
    database_secret,
    password,
)
from testbed.storage import tenant_path
from testbed.versions import IMAGES, RDS_POSTGRES_ENGINE_VERSION
from testbed.config import StackConfig


class AwsMlflowStorage(pulumi.ComponentResource):
    """A private RDS instance and an encrypted, non-public S3 bucket."""

    def __init__(
        self, name: str, stack: StackConfig, eks, ns: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("testbed:storage:AwsMlflow", name, None, opts)
        prefix = f"{stack.platform.mlflow_bucket_prefix}-{stack.region.id}-"
        bucket = aws.s3.Bucket(name, bucket_prefix=prefix, force_destroy=False, opts=child(self))
        aws.s3.BucketPublicAccessBlock(
            name,
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child(self),
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            name,
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child(self),
        )
        pod_role(
            f"{name}-mlflow",
            eks.cluster.name,
            PLATFORM_NS,
            MLFLOW,
            bucket.arn.apply(
                lambda arn: policy_document(
                    [
                        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn]},
                        {
                            "Effect": "Allow",
                            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                            "Resource": [f"{arn}/*"],
                        },
                    ]
                )
            ),
            self,
        )
        self.eks, self.bucket = eks, bucket
        # The control plane stores tenants' code packages and data, and lists and removes job outputs: tenants/*.
        pod_role(
            f"{name}-control-plane",
            eks.cluster.name,
            PLATFORM_NS,
            CONTROL_PLANE,
            bucket.arn.apply(lambda arn: prefix_policy(arn, TENANTS_PREFIX)),
            self,
        )

        subnets = aws.rds.SubnetGroup(name, subnet_ids=eks.network.private_subnet_ids, opts=child(self))
        security_group = aws.ec2.SecurityGroup(
            name,
            vpc_id=eks.network.vpc.id,
            description="PostgreSQL from inside the VPC only",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp", from_port=5432, to_port=5432, cidr_blocks=[eks.network.cidr]
                )
            ],
            opts=child(self),
        )
        secret = password(f"{name}-db", self)
        db = aws.rds.Instance(
            name,
            identifier_prefix=f"testbed-{stack.region.id}-",
            engine="postgres",
            engine_version=RDS_POSTGRES_ENGINE_VERSION,
            instance_class="db.t4g.medium",
            allocated_storage=50,
            max_allocated_storage=500,
            storage_encrypted=True,
            db_name=MLFLOW_DB,
            username=DB_USER,
            password=secret.result,
            publicly_accessible=False,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[security_group.id],
            backup_retention_period=7,
            skip_final_snapshot=False,
            final_snapshot_identifier=f"testbed-{stack.region.id}-mlflow-final",
            opts=child(self),
        )

        db_secret, control_plane_uri, mlflow_auth_uri = database_secret(
            f"{name}-db", self, ns, db.address, db.port, secret.result, "?sslmode=require"
        )
        init = database_init_job(f"{name}-db-init", self, ns, IMAGES["postgres"].ref, [db_secret, db])
        self.storage = MlflowStorage(
            db_secret=DB_SECRET,
            artifacts_destination=pulumi.Output.concat("s3://", bucket.bucket, "/artifacts"),
            control_plane_db_uri=control_plane_uri,
            mlflow_auth_db_uri=mlflow_auth_uri,
            job_storage=pulumi.Output.concat("s3://", bucket.bucket, "/", TENANTS_PREFIX),
            env=[],
            ready=[db_secret, init],
            tenant_identity=self.tenant_identity,
        )
        self.register_outputs({"bucket": bucket.bucket, "db_address": db.address})

    def tenant_identity(self, tenant: str, namespace: str, service_account: str) -> None:
        """An IAM role reaching ``<bucket>/tenants/<tenant>/*`` only, assumed by the tenant's job ServiceAccount
        through EKS Pod Identity (the cluster runs the eks-pod-identity-agent add-on)."""
        prefix = tenant_path(TENANTS_PREFIX, tenant)
        pod_role(
            f"tenant-{tenant}-jobs",
            self.eks.cluster.name,
            namespace,
            service_account,
            self.bucket.arn.apply(lambda arn: prefix_policy(arn, prefix)),
            self,
        )
