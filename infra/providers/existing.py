"""A cluster that already exists, reached through a kubeconfig kept as a Pulumi secret.

Its GPU pools are node sets that already carry the labels and taints the stack file declares.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra import stack as stack_config
from infra.providers import Cluster, GpuPool
from testbed.config import StackConfig


def build(name: str, stack: StackConfig) -> Cluster:
    from infra.storage.in_cluster import InClusterMlflowStorage

    assert stack.cluster.kubeconfig_secret  # the model requires it for provider=existing
    kubeconfig = stack_config.secret(stack.cluster.kubeconfig_secret)
    provider = k8s.Provider(f"{name}-k8s", kubeconfig=kubeconfig, enable_server_side_apply=True)
    return Cluster(
        name=name,
        kubeconfig=kubeconfig,
        provider=provider,
        pools=[GpuPool(p, managed=False) for p in stack.node_pools],
        mlflow_storage=lambda parent, ns: (
            InClusterMlflowStorage(f"{name}-mlflow-storage", ns, opts=pulumi.ResourceOptions(parent=parent)).storage
        ),
    )
