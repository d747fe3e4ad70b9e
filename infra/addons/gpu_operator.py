"""NVIDIA GPU Operator with the DCGM exporter and its ServiceMonitor."""

from __future__ import annotations

import pulumi

from infra.addons.helm import namespace, release
from infra.naming import GPU_OPERATOR_NS


class GpuOperator(pulumi.ComponentResource):
    """Device plugin, DCGM exporter and (unless the node image has them) drivers on every GPU node."""

    def __init__(
        self,
        name: str,
        drivers_preinstalled: bool,
        monitoring: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("testbed:addon:GpuOperator", name, None, opts)
        ns = namespace(GPU_OPERATOR_NS, self, privileged=True)
        self.release = release(
            "gpu-operator",
            self,
            ns.metadata.name,
            {
                "driver": {"enabled": not drivers_preinstalled},
                "toolkit": {"enabled": not drivers_preinstalled},
                # honorLabels: the exporter's own namespace/pod labels (the pod holding each GPU) win over the target's,
                # so the idle-GPU rules (operators/metering/rules.yaml, testbed.gpu.idle) can join them to jobs.
                "dcgmExporter": {
                    "enabled": True,
                    "serviceMonitor": {"enabled": True, "interval": "15s", "honorLabels": True},
                },
            },
            depends_on=[monitoring],
        )  # the ServiceMonitor CRD comes with kube-prometheus-stack
        self.register_outputs({})
