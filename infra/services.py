"""The platform on a region's cluster: monitoring, GPU operator, KubeRay, Kueue, MLflow, control plane."""

from __future__ import annotations

import pulumi

from infra.addons.control_plane import ControlPlane
from infra.addons.gpu_operator import GpuOperator
from infra.addons.helm import namespace
from infra.addons.kuberay import KubeRay
from infra.addons.kueue import Kueue
from infra.addons.mlflow import Mlflow
from infra.addons.monitoring import Monitoring
from infra.k8s import child
from infra.naming import PLATFORM_NS
from infra.providers import Cluster
from testbed.config import StackConfig


class Platform(pulumi.ComponentResource):
    """Every shared service of the region; tenant environments build on it."""

    def __init__(
        self,
        name: str,
        stack: StackConfig,
        cluster: Cluster,
        image: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("testbed:platform:Services", name, None, opts)
        self.monitoring = Monitoring("monitoring", stack, opts=child(self))
        crds = self.monitoring.release
        if stack.platform.gpu_operator:
            GpuOperator("gpu-operator", cluster.gpu_drivers_preinstalled, crds, opts=child(self))
        self.kuberay = KubeRay("kuberay", crds, opts=child(self))
        self.kueue = Kueue("kueue", stack, cluster.pools, crds, opts=child(self))
        ns = namespace(PLATFORM_NS, self)
        self.mlflow = Mlflow("mlflow", stack, image, ns.metadata.name, cluster.mlflow_storage, opts=child(self))
        self.control_plane = ControlPlane(
            "control-plane",
            stack,
            image,
            ns.metadata.name,
            self.mlflow.url,
            self.mlflow.storage,
            crds,
            depends_on=[self.kuberay.release, self.kueue.release, self.mlflow.auth_secret],
            prometheus_url=self.monitoring.prometheus_url,
            opts=child(self),
        )
        self.register_outputs(
            {
                "mlflow_url": self.mlflow.url,
                "control_plane_url": self.control_plane.url,
                "grafana_url": self.monitoring.grafana_url,
            }
        )
