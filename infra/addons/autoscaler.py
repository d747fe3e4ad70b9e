"""cluster-autoscaler for EKS: scales GPU node groups up from zero when Kueue admits a job."""

from __future__ import annotations

import pulumi

from infra.addons.helm import release
from infra.providers.aws_iam import pod_role, policy_document
from infra.stack import load, stack_file_name
from testbed.versions import CLUSTER_AUTOSCALER_IMAGES, Image

SERVICE_ACCOUNT = "cluster-autoscaler"
NAMESPACE = "kube-system"
ACTIONS = [
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeTags",
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
]
# Command-line flags (the chart's `extraArgs` map; its values.yaml lists each as a commented example).
EXTRA_ARGS = {"balance-similar-node-groups": True, "skip-nodes-with-system-pods": False, "expander": "least-waste"}


def autoscaler_image(kubernetes_version: str) -> Image:
    """The cluster-autoscaler release of the cluster's Kubernetes minor (testbed/versions.py)."""
    image = CLUSTER_AUTOSCALER_IMAGES.get(kubernetes_version)
    if image is None:
        raise pulumi.RunError(
            f"{stack_file_name()}: config.testbed:cluster.kubernetes_version: no cluster-autoscaler release is "
            f"pinned for Kubernetes {kubernetes_version} (testbed/versions.py pins "
            f"{', '.join(sorted(CLUSTER_AUTOSCALER_IMAGES))})"
        )
    return image


def chart_values(cluster_name: pulumi.Input[str], region: str, kubernetes_version: str) -> dict:
    """Values of chart cluster-autoscaler 9.59.0 (every key is in its values.yaml)."""
    image = autoscaler_image(kubernetes_version)
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},
        "image": {"repository": image.repository, "tag": image.tag},
        "rbac": {"serviceAccount": {"create": True, "name": SERVICE_ACCOUNT}},
        "extraArgs": dict(EXTRA_ARGS),
    }


class ClusterAutoscaler(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        eks,
        region: str,
        kubernetes_version: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("testbed:addon:ClusterAutoscaler", name, None, opts)
        pod_role(
            name,
            eks.cluster.name,
            NAMESPACE,
            SERVICE_ACCOUNT,
            policy_document([{"Effect": "Allow", "Action": ACTIONS, "Resource": "*"}]),
            self,
        )
        if kubernetes_version is None:  # the stack's testbed:cluster.kubernetes_version
            kubernetes_version = load().cluster.kubernetes_version
        self.release = release(
            "cluster-autoscaler",
            self,
            NAMESPACE,
            chart_values(eks.cluster.name, region, kubernetes_version),
            depends_on=[eks],
        )
        self.register_outputs({})
