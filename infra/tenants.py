"""One environment per tenant: namespace, quota, limits, network isolation, RBAC, Kueue queues, and the
ServiceAccount its Ray pods run as (on eks bound to an IAM role that reaches its own storage prefix only)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.addons.kueue import Kueue
from infra.k8s import child, custom_resource, memory, meta
from infra.naming import (
    CONTROL_PLANE,
    CONTROL_PLANE_PORT,
    KUBERAY_NS,
    MANAGED_BY,
    MLFLOW,
    MLFLOW_PORT,
    MONITORING_NS,
    PLATFORM_NS,
    flavor,
)
from infra.storage import MlflowStorage
from testbed.placement import cluster_queue, job_service_account, local_queue, tenant_namespace
from testbed.kube import GPU_RESOURCE, TENANT_LABEL
from testbed.versions import KUEUE_API
from testbed.config import NodePool, StackConfig, Tenant

PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]
# The EKS Pod Identity Agent on every node (link-local, hence outside the internet rule): the job pods' credentials.
POD_IDENTITY_AGENT = ("169.254.170.23/32", 80)
RAY_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]
MIB = 2**20


@dataclass(frozen=True)
class Allocation:
    """A tenant's nominal quota and what it may borrow in the cohort, capped by its pool."""

    cpus: int
    memory: int  # bytes
    gpus: int
    borrow_cpus: int
    borrow_memory: int
    borrow_gpus: int

    @classmethod
    def of(cls, tenant: Tenant, pool: NodePool, ratio: float) -> "Allocation":
        q = tenant.quota

        def borrow(nominal: int, capacity: int, unit: int = 1) -> int:
            wanted = math.ceil(nominal * ratio / unit) * unit
            return max(0, min(wanted, capacity - nominal))

        return cls(
            q.cpus,
            q.memory,
            q.gpus,
            borrow(q.cpus, pool.max_cpus),
            borrow(q.memory, pool.max_memory, MIB),
            borrow(q.gpus, pool.max_gpus),
        )

    @property
    def ceiling(self) -> dict[str, str]:
        """The most the tenant can hold at once (nominal + borrowed): the namespace's hard quota."""
        return {
            "cpu": str(self.cpus + self.borrow_cpus),
            "memory": memory(self.memory + self.borrow_memory),
            GPU_RESOURCE: str(self.gpus + self.borrow_gpus),
        }

    def kueue_resources(self) -> list[dict]:
        """The flavor's quota rows (v1beta2): nominalQuota, and borrowingLimit from the stack's borrowing_ratio.

        lendingLimit stays unset: all of a tenant's idle nominal quota may be lent in the cohort, and
        ``preemption.reclaimWithinCohort: Any`` gives it back when the tenant's own jobs need it.
        """
        rows = [
            ("cpu", str(self.cpus), str(self.borrow_cpus)),
            ("memory", memory(self.memory), memory(self.borrow_memory) if self.borrow_memory else "0"),
            (GPU_RESOURCE, str(self.gpus), str(self.borrow_gpus)),
        ]
        return [{"name": n, "nominalQuota": nominal, "borrowingLimit": limit} for n, nominal, limit in rows]


def cluster_queue_spec(cohort_name: str, namespace: str, flavor_name: str, alloc: Allocation) -> dict:
    """A tenant's ClusterQueue (kueue.x-k8s.io/v1beta2): its namespace only, one GPU-pool flavor, in the cohort."""
    return {
        "cohortName": cohort_name,
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "queueingStrategy": "BestEffortFIFO",
        "resourceGroups": [
            {
                "coveredResources": ["cpu", "memory", GPU_RESOURCE],
                "flavors": [{"name": flavor_name, "resources": alloc.kueue_resources()}],
            }
        ],
        # One flavor per queue; the v1beta2 values (MayStopSearch replaced Borrow/Preempt) spelled out, as
        # Kueue defaults them: take the flavor when borrowing fits, look further only before preempting.
        "flavorFungibility": {"whenCanBorrow": "MayStopSearch", "whenCanPreempt": "TryNextFlavor"},
        "preemption": {
            "reclaimWithinCohort": "Any",
            "borrowWithinCohort": {"policy": "Never"},
            "withinClusterQueue": "LowerPriority",
        },
    }


def _peer(namespace: str, component: str | None = None) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": namespace}),
        pod_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={"app.kubernetes.io/name": component} if component else None
        ),
    )


def _ports(*ports: tuple[int, str]) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    return [k8s.networking.v1.NetworkPolicyPortArgs(port=p, protocol=proto) for p, proto in ports]


class TenantEnvironment(pulumi.ComponentResource):
    """Everything one company gets in the region's cluster."""

    def __init__(
        self,
        name: str,
        stack: StackConfig,
        tenant: Tenant,
        kueue: Kueue,
        control_plane_account: str,
        storage: MlflowStorage,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("testbed:tenant:Environment", name, None, opts)
        pool = stack.pool_for(tenant)
        alloc = Allocation.of(tenant, pool, stack.platform.borrowing_ratio)
        tenant_labels = {**MANAGED_BY, TENANT_LABEL: tenant.id, "testbed.io/region": stack.region.id}
        self.namespace_name = tenant_namespace(tenant)
        self.namespace = k8s.core.v1.Namespace(
            name,
            metadata=meta(
                self.namespace_name, labels={**tenant_labels, "pod-security.kubernetes.io/enforce": "baseline"}
            ),
            opts=child(self),
        )
        ns = self.namespace.metadata.name

        hard = alloc.ceiling
        self.quota = k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=meta("tenant-quota", ns, tenant_labels),
            spec=k8s.core.v1.ResourceQuotaSpecArgs(
                hard={
                    "requests.cpu": hard["cpu"],
                    "requests.memory": hard["memory"],
                    "limits.memory": hard["memory"],
                    f"requests.{GPU_RESOURCE}": hard[GPU_RESOURCE],
                    "pods": "200",
                    "services.loadbalancers": "0",
                    "services.nodeports": "0",
                }
            ),
            opts=child(self),
        )
        self.limits = k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=meta("tenant-defaults", ns, tenant_labels),
            spec=k8s.core.v1.LimitRangeSpecArgs(
                limits=[
                    k8s.core.v1.LimitRangeItemArgs(
                        type="Container",
                        default={"cpu": "1", "memory": "2Gi"},
                        default_request={"cpu": "250m", "memory": "512Mi"},
                        max={"cpu": hard["cpu"], "memory": hard["memory"]},
                    )
                ]
            ),
            opts=child(self),
        )
        self.network_policies = self._network_policies(
            name, ns, tenant_labels, pod_identity=stack.cluster.provider == "eks"
        )

        # The identity of the tenant's Ray pods (the kuberay backend names it from the placement): its own storage
        # prefix and nothing else; no Kubernetes API token.
        self.service_account_name = job_service_account(tenant)
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-jobs",
            metadata=meta(self.service_account_name, ns, tenant_labels),
            automount_service_account_token=False,
            opts=child(self),
        )
        if storage.tenant_identity is not None:
            storage.tenant_identity(tenant.id, self.namespace_name, self.service_account_name)

        self.role = k8s.rbac.v1.Role(
            f"{name}-rayjobs",
            metadata=meta("testbed-rayjobs", ns, tenant_labels),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(api_groups=["ray.io"], resources=["rayjobs"], verbs=RAY_VERBS),
                k8s.rbac.v1.PolicyRuleArgs(api_groups=["ray.io"], resources=["rayjobs/status"], verbs=["get"]),
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["ray.io"], resources=["rayclusters"], verbs=["get", "list", "watch"]
                ),
                # Job logs: the kuberay backend finds the submitter/head pod and reads its log.
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=["get", "list"]),
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods/log"], verbs=["get"]),
                # Each job's MLflow login: a Secret per job the pods read by secretKeyRef (owned by its RayJob).
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["secrets"], verbs=["create", "update"]),
                # Kueue's reason a job waits (or was evicted) is on the RayJob's Workload.
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["kueue.x-k8s.io"], resources=["workloads"], verbs=["get", "list"]
                ),
            ],
            opts=child(self),
        )
        self.role_binding = k8s.rbac.v1.RoleBinding(
            f"{name}-rayjobs",
            metadata=meta("testbed-control-plane-rayjobs", ns, tenant_labels),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=self.role.metadata.name
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=control_plane_account, namespace=PLATFORM_NS)
            ],
            opts=child(self),
        )

        crds = [kueue.release, kueue.flavors[pool.name], kueue.cohort]
        self.cluster_queue_name = cluster_queue(stack, tenant)
        self.cluster_queue = custom_resource(
            f"{name}-cq",
            self,
            KUEUE_API,
            "ClusterQueue",
            meta(self.cluster_queue_name, labels=tenant_labels),
            cluster_queue_spec(kueue.cohort_name, self.namespace_name, flavor(pool), alloc),
            crds_from=crds,
        )
        self.local_queue_name = local_queue(tenant)
        self.local_queue = custom_resource(
            f"{name}-lq",
            self,
            KUEUE_API,
            "LocalQueue",
            meta(self.local_queue_name, ns, tenant_labels),
            {"clusterQueue": self.cluster_queue_name},
            crds_from=[*crds, self.cluster_queue],
        )
        self.register_outputs(
            {
                "namespace": self.namespace_name,
                "local_queue": self.local_queue_name,
                "cluster_queue": self.cluster_queue_name,
                "service_account": self.service_account_name,
            }
        )

    def _network_policies(
        self, name: str, ns: pulumi.Input[str], tenant_labels: dict[str, str], pod_identity: bool
    ) -> list[k8s.networking.v1.NetworkPolicy]:
        """Deny by default; allow own pods, DNS, MLflow, the control plane, KubeRay, Prometheus, the internet
        (and on eks the node's Pod Identity Agent, which hands the pods their storage credentials)."""
        agent = (
            [
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[
                        k8s.networking.v1.NetworkPolicyPeerArgs(
                            ip_block=k8s.networking.v1.IPBlockArgs(cidr=POD_IDENTITY_AGENT[0])
                        )
                    ],
                    ports=_ports((POD_IDENTITY_AGENT[1], "TCP")),
                )
            ]
            if pod_identity
            else []
        )
        everything = k8s.meta.v1.LabelSelectorArgs()
        own = k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=everything)
        deny = k8s.networking.v1.NetworkPolicy(
            f"{name}-deny",
            metadata=meta("default-deny", ns, tenant_labels),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(pod_selector=everything, policy_types=["Ingress", "Egress"]),
            opts=child(self),
        )
        allow = k8s.networking.v1.NetworkPolicy(
            f"{name}-allow",
            metadata=meta("allow-testbed", ns, tenant_labels),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=everything,
                policy_types=["Ingress", "Egress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=[own]),
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[_peer(PLATFORM_NS, CONTROL_PLANE), _peer(KUBERAY_NS), _peer(MONITORING_NS)]
                    ),
                ],
                egress=[
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[own]),
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[_peer("kube-system")], ports=_ports((53, "UDP"), (53, "TCP"))
                    ),
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[_peer(PLATFORM_NS, MLFLOW)], ports=_ports((MLFLOW_PORT, "TCP"))
                    ),
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[_peer(PLATFORM_NS, CONTROL_PLANE)], ports=_ports((CONTROL_PLANE_PORT, "TCP"))
                    ),
                    # Public internet (datasets, packages) but no other tenant or private address.
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                ip_block=k8s.networking.v1.IPBlockArgs(cidr="0.0.0.0/0", except_=PRIVATE_RANGES)
                            )
                        ]
                    ),
                    *agent,
                ],
            ),
            opts=child(self),
        )
        return [deny, allow]
