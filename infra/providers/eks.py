"""AWS EKS: VPC, cluster, a system node group and one managed node group per GPU pool."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.k8s import child
from testbed.kube import GPU_RESOURCE
from infra.providers import Cluster, GpuPool
from infra.providers.aws_iam import CLUSTER_POLICIES, NODE_POLICIES, service_role
from infra.providers.aws_network import Network
from testbed.versions import EKS_AMI_TYPES
from testbed.config import NodePool, StackConfig

CAPACITY_TYPES = {"on-demand": "ON_DEMAND", "spot": "SPOT"}
GPU_DISK_GB = 200


def kubeconfig(
    name: pulumi.Input[str], endpoint: pulumi.Input[str], ca_data: pulumi.Input[str], region: str
) -> pulumi.Output[str]:
    """A kubeconfig that authenticates with ``aws eks get-token`` (secret)."""

    def render(args: list[str]) -> str:
        cluster_name, server, ca = args
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": cluster_name,
                "clusters": [{"name": cluster_name, "cluster": {"server": server, "certificate-authority-data": ca}}],
                "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
                "users": [
                    {
                        "name": cluster_name,
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1beta1",
                                "command": "aws",
                                "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region],
                            }
                        },
                    }
                ],
            },
            indent=2,
        )

    return pulumi.Output.secret(pulumi.Output.all(name, endpoint, ca_data).apply(render))


def autoscaler_tags(cluster_name: str, pool: GpuPool) -> dict[str, str]:
    """Tags letting cluster-autoscaler scale a pool up from zero nodes."""
    prefix = "k8s.io/cluster-autoscaler"
    tags = {
        f"{prefix}/enabled": "true",
        f"{prefix}/{cluster_name}": "owned",
        f"{prefix}/node-template/resources/{GPU_RESOURCE}": str(pool.config.gpus_per_node),
    }
    tags.update({f"{prefix}/node-template/label/{k}": v for k, v in pool.labels.items()})
    tags.update({f"{prefix}/node-template/taint/{t.key}": f"{t.value}:{t.effect}" for t in pool.taints})
    return tags


class EksCluster(pulumi.ComponentResource):
    """An EKS cluster with its network, IAM roles and node groups."""

    def __init__(self, name: str, stack: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:cluster:Eks", name, None, opts)
        cfg = stack.cluster
        self.network = Network(f"{name}-net", cfg.vpc_cidr, cfg.availability_zones, name, opts=child(self))
        cluster_role, cluster_attached = service_role(f"{name}-cluster", "eks.amazonaws.com", self, CLUSTER_POLICIES)
        self.node_role, node_attached = service_role(f"{name}-node", "ec2.amazonaws.com", self, NODE_POLICIES)

        self.cluster = aws.eks.Cluster(
            name,
            name=name,
            role_arn=cluster_role.arn,
            version=cfg.kubernetes_version,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=self.network.private_subnet_ids + self.network.public_subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=True,
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=True
            ),
            enabled_cluster_log_types=["api", "audit", "authenticator"],
            tags={"testbed.io/region": stack.region.id},
            opts=child(self, depends_on=cluster_attached),
        )
        aws.eks.Addon(
            f"{name}-pod-identity",
            cluster_name=self.cluster.name,
            addon_name="eks-pod-identity-agent",
            opts=child(self),
        )

        self.system = self._node_group(
            f"{name}-system",
            [cfg.system_instance_type],
            EKS_AMI_TYPES["cpu"],
            "ON_DEMAND",
            cfg.system_nodes,
            cfg.system_nodes,
            cfg.system_nodes * 2,
            labels={"testbed.io/node-role": "system"},
            depends_on=node_attached,
        )
        self.pools = [GpuPool(p) for p in stack.node_pools]
        self.gpu_groups = [self._gpu_group(name, pool, node_attached) for pool in self.pools]

        self.kubeconfig = kubeconfig(
            self.cluster.name, self.cluster.endpoint, self.cluster.certificate_authority.data, cfg.location
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=child(self, depends_on=[self.system]),
        )
        self.register_outputs(
            {"cluster_name": self.cluster.name, "endpoint": self.cluster.endpoint, "kubeconfig": self.kubeconfig}
        )

    def _node_group(
        self,
        name: str,
        instance_types: list[str],
        ami_type: str,
        capacity_type: str,
        desired: int,
        min_size: int,
        max_size: int,
        labels: dict[str, str],
        depends_on: list[pulumi.Resource],
        taints: list | None = None,
        tags: dict[str, str] | None = None,
        disk_size: int | None = None,
    ) -> aws.eks.NodeGroup:
        return aws.eks.NodeGroup(
            name,
            cluster_name=self.cluster.name,
            node_group_name=name,
            node_role_arn=self.node_role.arn,
            subnet_ids=self.network.private_subnet_ids,
            instance_types=instance_types,
            ami_type=ami_type,
            capacity_type=capacity_type,
            disk_size=disk_size,
            labels=labels,
            taints=taints,
            tags=tags,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                desired_size=desired, min_size=min_size, max_size=max_size
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            opts=child(self, depends_on=depends_on, ignore_changes=["scalingConfig.desiredSize"]),
        )

    def _gpu_group(self, cluster_name: str, pool: GpuPool, depends_on: list[pulumi.Resource]) -> aws.eks.NodeGroup:
        cfg: NodePool = pool.config
        if not cfg.instance_types:
            raise pulumi.RunError(
                f"Pulumi.{pulumi.get_stack()}.yaml: config.testbed:nodePools ({cfg.name}).instance_types: "
                "an eks GPU pool needs at least one instance type"
            )
        return self._node_group(
            f"{cluster_name}-{cfg.name}",
            cfg.instance_types,
            EKS_AMI_TYPES["gpu"],
            CAPACITY_TYPES[cfg.capacity_type],
            cfg.min_size,
            cfg.min_size,
            cfg.max_size,
            labels=pool.labels,
            taints=[aws.eks.NodeGroupTaintArgs(**t.eks()) for t in pool.taints],
            tags=autoscaler_tags(cluster_name, pool),
            disk_size=GPU_DISK_GB,
            depends_on=depends_on,
        )


def build(name: str, stack: StackConfig) -> Cluster:
    """Build the EKS cluster in ``cluster.location`` (an AWS region)."""
    from infra.addons.autoscaler import ClusterAutoscaler
    from infra.storage.aws import AwsMlflowStorage

    aws_provider = aws.Provider(f"{name}-aws", region=stack.cluster.location)
    eks = EksCluster(name, stack, opts=pulumi.ResourceOptions(providers={"aws": aws_provider}))
    autoscaler = ClusterAutoscaler(
        f"{name}-autoscaler",
        eks,
        stack.cluster.location,
        opts=pulumi.ResourceOptions(providers={"aws": aws_provider, "kubernetes": eks.provider}),
    )
    return Cluster(
        name=name,
        kubeconfig=eks.kubeconfig,
        provider=eks.provider,
        pools=eks.pools,
        mlflow_storage=lambda parent, ns: (
            AwsMlflowStorage(
                f"{name}-mlflow-storage",
                stack,
                eks,
                ns,
                opts=pulumi.ResourceOptions(parent=parent, providers={"aws": aws_provider, "kubernetes": eks.provider}),
            ).storage
        ),
        ready=[eks, autoscaler],
        gpu_drivers_preinstalled=True,  # the NVIDIA AMI has them
    )
