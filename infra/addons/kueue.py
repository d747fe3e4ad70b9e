"""Kueue: one ResourceFlavor per GPU pool and one Cohort for the region (kueue.x-k8s.io/v1beta2)."""

from __future__ import annotations

import pulumi

from infra.addons.helm import namespace, release
from infra.k8s import custom_resource, meta
from infra.naming import KUEUE_NS, cohort, flavor, labels
from infra.providers import GpuPool
from infra.stack import stack_file_name
from testbed.config import StackConfig
from testbed.kube import POOL_LABEL
from testbed.versions import KUEUE_API

# Chart values (charts/kueue/values.yaml at v0.19.2): the chart's ServiceMonitor for the manager's metrics
# (kube-prometheus-stack's Prometheus may read /metrics cluster-wide through its own ClusterRole).
CHART_VALUES = {"enablePrometheus": True}


def flavor_node_labels(pool: GpuPool, index: int) -> dict[str, str]:
    """Node labels the pool's nodes are guaranteed to carry, which Kueue adds to admitted pods' nodeSelector.

    eks: the labels the stack sets on the managed node group (``pool.labels``). existing: only what the stack
    file declares in ``node_labels``; nothing else is known to be on those nodes, and a flavor without node
    labels would let the pool's jobs land on any GPU node.
    """
    node_labels = pool.labels if pool.managed else dict(pool.config.node_labels)
    if not node_labels:
        raise pulumi.RunError(
            f"{stack_file_name()}: config.testbed:nodePools[{index}].node_labels: GPU pool {pool.name!r} of an "
            "existing cluster needs the labels its nodes carry (e.g. testbed.io/gpu-model: a100); Kueue puts "
            "the pool's jobs on nodes with these labels"
        )
    return node_labels


def flavor_spec(pool: GpuPool, index: int = 0) -> dict:
    """Pods admitted on this flavor land on the pool's nodes and tolerate its taints."""
    return {"nodeLabels": flavor_node_labels(pool, index), "tolerations": [t.toleration() for t in pool.taints]}


class Kueue(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        stack: StackConfig,
        pools: list[GpuPool],
        monitoring: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("testbed:addon:Kueue", name, None, opts)
        ns = namespace(KUEUE_NS, self)
        self.release = release("kueue", self, ns.metadata.name, CHART_VALUES, depends_on=[monitoring])
        self.flavors = {
            pool.name: custom_resource(
                f"{name}-flavor-{pool.name}",
                self,
                KUEUE_API,
                "ResourceFlavor",
                meta(flavor(pool.config), labels=labels("kueue-flavor", **{POOL_LABEL: pool.name})),
                flavor_spec(pool, index),
                crds_from=[self.release],
            )
            for index, pool in enumerate(pools)
        }
        # The region's cohort: every tenant's ClusterQueue joins it (spec.cohortName) and borrows idle quota of
        # the same flavor from the others, up to its borrowingLimit. The Cohort itself holds no quota.
        self.cohort_name = cohort(stack)
        self.cohort = custom_resource(
            f"{name}-cohort",
            self,
            KUEUE_API,
            "Cohort",
            meta(self.cohort_name, labels=labels("kueue-cohort")),
            {},
            crds_from=[self.release],
        )
        self.register_outputs({"cohort": self.cohort_name, "flavors": list(self.flavors)})
