"""Kueue: one ResourceFlavor per GPU pool and one Cohort for the region."""

from __future__ import annotations

import pulumi

from infra.addons.helm import namespace, release
from infra.k8s import custom_resource, meta
from infra.naming import KUEUE_NS, cohort, flavor, labels
from testbed.kube import POOL_LABEL
from infra.providers import GpuPool
from testbed.versions import KUEUE_API, KUEUE_COHORT_API
from testbed.config import StackConfig


def flavor_spec(pool: GpuPool) -> dict:
    """Pods admitted on this flavor land on the pool's nodes and tolerate its taints."""
    return {"nodeLabels": pool.labels, "tolerations": [t.toleration() for t in pool.taints]}


class Kueue(pulumi.ComponentResource):
    def __init__(self, name: str, stack: StackConfig, pools: list[GpuPool], monitoring: pulumi.Resource,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:addon:Kueue", name, None, opts)
        ns = namespace(KUEUE_NS, self)
        self.release = release("kueue", self, ns.metadata.name, {"enablePrometheus": True},
                               depends_on=[monitoring])
        self.flavors = {
            pool.name: custom_resource(f"{name}-flavor-{pool.name}", self, KUEUE_API, "ResourceFlavor",
                                       meta(flavor(pool.config), labels=labels("kueue-flavor", **{POOL_LABEL: pool.name})),
                                       flavor_spec(pool), crds_from=[self.release])
            for pool in pools
        }
        self.cohort_name = cohort(stack)
        self.cohort = custom_resource(f"{name}-cohort", self, KUEUE_COHORT_API, "Cohort",
                                      meta(self.cohort_name, labels=labels("kueue-cohort")), {},
                                      crds_from=[self.release])
        self.register_outputs({"cohort": self.cohort_name, "flavors": list(self.flavors)})
