"""Names of the platform's namespaces and components (labels both sides use live in :mod:`testbed.kube`)."""

from __future__ import annotations

from testbed.config import NodePool, StackConfig
from testbed.kube import GPU_MODEL_LABEL, POOL_LABEL

COMPONENT_LABEL = "app.kubernetes.io/name"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "regional-ai-testbed"}

# Namespaces of the platform.
PLATFORM_NS = "testbed-system"
MONITORING_NS = "monitoring"
GPU_OPERATOR_NS = "gpu-operator"
KUBERAY_NS = "kuberay-system"
KUEUE_NS = "kueue-system"

# Platform components (their app.kubernetes.io/name label and Service name).
CONTROL_PLANE = "testbed-control-plane"
CONTROL_PLANE_PORT = 8000
MLFLOW = "mlflow"
MLFLOW_PORT = 5000
POSTGRES = "postgres"
OBJECT_STORE = "minio"
# Components that must never get a public LoadBalancer.
PRIVATE_COMPONENTS = (CONTROL_PLANE, MLFLOW, POSTGRES, OBJECT_STORE)


def flavor(pool: NodePool) -> str:
    """Kueue ResourceFlavor of a GPU pool."""
    return pool.name


def cohort(stack: StackConfig) -> str:
    return stack.region.id


def pool_labels(pool: NodePool, managed: bool = True) -> dict[str, str]:
    """Labels selecting a pool's nodes.

    Managed pools (eks) get the testbed's labels plus the declared ones; existing clusters' nodes
    carry only what the stack file declares (the GPU-model label when nothing is declared).
    """
    if not managed:
        return dict(pool.node_labels) or {GPU_MODEL_LABEL: pool.gpu_model}
    return {GPU_MODEL_LABEL: pool.gpu_model, POOL_LABEL: pool.name, **pool.node_labels}


def labels(component: str, **extra: str) -> dict[str, str]:
    return {COMPONENT_LABEL: component, **MANAGED_BY, **extra}


def service_url(name: str, namespace: str, port: int) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local:{port}"
