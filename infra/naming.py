"""Names and labels shared by the program, the policy pack and the control plane's ConfigMap."""

from __future__ import annotations

from testbed.config import NodePool, StackConfig, Tenant

TENANT_LABEL = "testbed.io/tenant"
REGION_LABEL = "testbed.io/region"
POOL_LABEL = "testbed.io/pool"
GPU_MODEL_LABEL = "testbed.io/gpu-model"
COMPONENT_LABEL = "app.kubernetes.io/name"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "regional-ai-testbed"}
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_TAINT = "nvidia.com/gpu=present:NoSchedule"

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


def tenant_namespace(tenant: Tenant) -> str:
    return f"tenant-{tenant.id}"


def local_queue(tenant: Tenant) -> str:
    """The LocalQueue in the tenant's namespace; RayJobs carry it as ``kueue.x-k8s.io/queue-name``."""
    return tenant.id


def cluster_queue(stack: StackConfig, tenant: Tenant) -> str:
    return f"{stack.region.id}-{tenant.id}"


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
