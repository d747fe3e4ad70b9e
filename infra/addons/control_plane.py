"""The testbed control plane in-cluster: it reads the same stack model from a ConfigMap."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra.addons.workload import WebService, deploy
from infra.k8s import child, custom_resource, meta
from infra.naming import (
    CONTROL_PLANE,
    CONTROL_PLANE_PORT,
    PLATFORM_NS,
    cluster_queue,
    labels,
    local_queue,
    service_url,
    tenant_namespace,
)
from infra.storage import DB_SECRET, secret_env
from infra.versions import MONITORING_API
from testbed.config import CONFIG_NAMESPACE, STACK_KEYS, StackConfig

CONFIG_DIR = "/etc/testbed"


def render_stack_file(stack: StackConfig) -> str:
    """The stack's ``testbed:`` config as a ``Pulumi.<region>.yaml`` document (``load_stack_file`` reads it)."""
    data = stack.model_dump(mode="json")
    config = {f"{CONFIG_NAMESPACE}:{key}": data[field] for key, field in STACK_KEYS.items()}
    header = (f"# Rendered by Pulumi from Pulumi.{stack.region.id}.yaml; edit that file, not this one.\n")
    return header + yaml.safe_dump({"config": config}, sort_keys=False, allow_unicode=True)


def render_placement(stack: StackConfig) -> str:
    """Where each tenant's jobs go in the cluster: namespace, LocalQueue and ClusterQueue."""
    return yaml.safe_dump({"region": stack.region.id, "tenants": {
        t.id: {"namespace": tenant_namespace(t), "localQueue": local_queue(t),
               "clusterQueue": cluster_queue(stack, t), "gpuPool": stack.pool_for(t).name}
        for t in stack.tenants}}, sort_keys=False)


class ControlPlane(pulumi.ComponentResource):
    """ServiceAccount, ConfigMap, Deployment, ClusterIP Service and a ServiceMonitor for /metrics."""

    def __init__(self, name: str, stack: StackConfig, ns: pulumi.Input[str], mlflow_url: str,
                 monitoring: pulumi.Resource, depends_on: list[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:addon:ControlPlane", name, None, opts)
        files = {f"Pulumi.{stack.region.id}.yaml": render_stack_file(stack), "placement.yaml": render_placement(stack)}
        digest = hashlib.sha256("".join(files.values()).encode()).hexdigest()
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=meta(f"{CONTROL_PLANE}-config", ns, labels(CONTROL_PLANE)), data=files,
            opts=child(self))
        env = {"TESTBED_REGION": stack.region.id, "TESTBED_STACK_DIR": CONFIG_DIR, "TESTBED_BACKEND": "kuberay",
               "TESTBED_PLACEMENT_FILE": f"{CONFIG_DIR}/placement.yaml", "MLFLOW_TRACKING_URI": mlflow_url}
        spec = WebService(
            component=CONTROL_PLANE, image=stack.platform.control_plane_image, port=CONTROL_PLANE_PORT,
            replicas=stack.platform.control_plane_replicas,
            env=[*(k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env.items()),
                 secret_env("TESTBED_DATABASE_URL", DB_SECRET, "testbed-uri")],
            volumes=[k8s.core.v1.VolumeArgs(name="config", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                name=self.config_map.metadata.name))],
            mounts=[k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True)],
            pod_annotations={"testbed.io/config-sha256": digest}, api_access=True)
        self.account, self.deployment, self.service = deploy(name, self, ns, spec, depends_on=depends_on)
        self.service_monitor = custom_resource(
            f"{name}-monitor", self, MONITORING_API, "ServiceMonitor", meta(CONTROL_PLANE, ns, labels(CONTROL_PLANE)),
            {"selector": {"matchLabels": {"app.kubernetes.io/name": CONTROL_PLANE}},
             "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s",
                            "relabelings": [{"targetLabel": "region", "replacement": stack.region.id,
                                             "action": "replace"}]}]},
            crds_from=[monitoring])
        self.service_account = CONTROL_PLANE
        self.url = service_url(CONTROL_PLANE, PLATFORM_NS, CONTROL_PLANE_PORT)
        self.register_outputs({"url": self.url})
