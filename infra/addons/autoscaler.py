"""cluster-autoscaler for EKS: scales GPU node groups up from zero when Kueue admits a job."""

from __future__ import annotations

import pulumi

from infra.addons.helm import release
from infra.providers.aws_iam import pod_role, policy_document

SERVICE_ACCOUNT = "cluster-autoscaler"
NAMESPACE = "kube-system"
ACTIONS = [
    "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeTags", "autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup",
    "ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements", "eks:DescribeNodegroup",
]


class ClusterAutoscaler(pulumi.ComponentResource):
    def __init__(self, name: str, eks, region: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:addon:ClusterAutoscaler", name, None, opts)
        pod_role(name, eks.cluster.name, NAMESPACE, SERVICE_ACCOUNT,
                 policy_document([{"Effect": "Allow", "Action": ACTIONS, "Resource": "*"}]), self)
        self.release = release("cluster-autoscaler", self, NAMESPACE, {
            "cloudProvider": "aws", "awsRegion": region,
            "autoDiscovery": {"clusterName": eks.cluster.name},
            "rbac": {"serviceAccount": {"create": True, "name": SERVICE_ACCOUNT}},
            "extraArgs": {"balance-similar-node-groups": True, "skip-nodes-with-system-pods": False,
                          "expander": "least-waste"},
        }, depends_on=[eks])
        self.register_outputs({})
