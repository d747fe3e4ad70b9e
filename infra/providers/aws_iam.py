"""IAM roles for EKS: the cluster, its nodes, and pods (EKS Pod Identity)."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.k8s import child

MANAGED = "arn:aws:iam::aws:policy/"
CLUSTER_POLICIES = ["AmazonEKSClusterPolicy"]
NODE_POLICIES = ["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"]


def _trust(service: str, actions: list[str]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}],
        }
    )


def service_role(
    name: str,
    service: str,
    parent: pulumi.Resource,
    managed: list[str] | None = None,
    inline: pulumi.Input[str] | None = None,
    actions: list[str] | None = None,
) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
    """A role the AWS service assumes, with managed policies and an optional inline policy."""
    role = aws.iam.Role(name, assume_role_policy=_trust(service, actions or ["sts:AssumeRole"]), opts=child(parent))
    attached: list[pulumi.Resource] = [
        aws.iam.RolePolicyAttachment(
            f"{name}-{policy}", role=role.name, policy_arn=MANAGED + policy, opts=child(parent)
        )
        for policy in managed or []
    ]
    if inline is not None:
        attached.append(aws.iam.RolePolicy(name, role=role.id, policy=inline, opts=child(parent)))
    return role, attached


def pod_role(
    name: str,
    cluster_name: pulumi.Input[str],
    namespace: str,
    service_account: str,
    policy: pulumi.Input[str],
    parent: pulumi.Resource,
) -> aws.iam.Role:
    """A role a Kubernetes ServiceAccount assumes through EKS Pod Identity."""
    role, _ = service_role(
        name, "pods.eks.amazonaws.com", parent, inline=policy, actions=["sts:AssumeRole", "sts:TagSession"]
    )
    aws.eks.PodIdentityAssociation(
        name,
        cluster_name=cluster_name,
        namespace=namespace,
        service_account=service_account,
        role_arn=role.arn,
        opts=child(parent),
    )
    return role


def policy_document(statements: list[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


PREFIX_OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]


def prefix_policy(bucket_arn: str, prefix: str) -> str:
    """Read, write, delete and list the objects under ``<bucket>/<prefix>/`` and nothing else of the bucket."""
    return policy_document(
        [
            {
                "Sid": "ObjectsUnderPrefix",
                "Effect": "Allow",
                "Action": PREFIX_OBJECT_ACTIONS,
                "Resource": [f"{bucket_arn}/{prefix}/*"],
            },
            {
                "Sid": "ListPrefixOnly",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [bucket_arn],
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
            },
        ]
    )
