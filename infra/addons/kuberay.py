"""KubeRay operator: runs the RayJobs the control plane creates in tenant namespaces."""

from __future__ import annotations

import pulumi

from infra.addons.helm import namespace, release
from infra.naming import KUBERAY_NS


class KubeRay(pulumi.ComponentResource):
    def __init__(self, name: str, monitoring: pulumi.Resource, opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:addon:KubeRay", name, None, opts)
        ns = namespace(KUBERAY_NS, self)
        self.release = release(
            "kuberay-operator",
            self,
            ns.metadata.name,
            {
                "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
            },
            depends_on=[monitoring],
        )
        self.register_outputs({})
