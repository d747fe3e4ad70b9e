"""The testbed control plane in-cluster: it reads the same stack model from a ConfigMap."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra.addons.workload import WebService, deploy
from infra.k8s import child, custom_resource, meta
from infra.naming import CONTROL_PLANE, CONTROL_PLANE_PORT, PLATFORM_NS, labels, service_url
from testbed.placement import Placement
from testbed.settings import ControlPlaneSettings
from infra.storage import MlflowStorage
from testbed.versions import MONITORING_API
from testbed.config import CONFIG_NAMESPACE, STACK_KEYS, StackConfig

CONFIG_DIR = "/etc/testbed"
PLACEMENT_FILE = "placement.yaml"
SETTINGS_DIR = "/etc/testbed-settings"
# The in-cluster backend creates KubeRay RayJobs (DESIGN.md, "Cluster" mode).
CLUSTER_BACKEND = "kuberay"


def render_settings(stack: StackConfig, database_url: str, mlflow_url: str, job_storage: str) -> str:
    """The control plane's settings file (``TESTBED_CONTROL_PLANE_SETTINGS``); a Secret, as it holds the DB URL."""
    pools = stack.node_pools
    return ControlPlaneSettings(
        stack_file=f"{CONFIG_DIR}/Pulumi.{stack.region.id}.yaml", database_url=database_url,
        backend=CLUSTER_BACKEND, placement_file=f"{CONFIG_DIR}/{PLACEMENT_FILE}",
        mlflow_tracking_uri=mlflow_url, storage_path=job_storage, ray_image=rayjob_image(stack),
        # The kuberay backend puts a job's whole budget on one worker pod: the largest job is one node's worth.
        capacity_cpus=max(p.cpus_per_node for p in pools), capacity_gpus=max(p.gpus_per_node for p in pools),
        capacity_memory=max(p.memory_per_node for p in pools),
        host="0.0.0.0", port=CONTROL_PLANE_PORT,
    ).to_json()


def rayjob_image(stack: StackConfig) -> str:
    """The jobs' Ray image is the control-plane image, not the stock ``IMAGES["ray"]``, because template jobs import
    this repository's ``workloads`` package, which only the control-plane image carries (with the same pinned Ray)."""
    return stack.platform.control_plane_image


def render_stack_file(stack: StackConfig) -> str:
    """The stack's ``testbed:`` config as a ``Pulumi.<region>.yaml`` document (``load_stack_file`` reads it)."""
    data = stack.model_dump(mode="json")
    config = {f"{CONFIG_NAMESPACE}:{key}": data[field] for key, field in STACK_KEYS.items()}
    header = (f"# Rendered by Pulumi from Pulumi.{stack.region.id}.yaml; edit that file, not this one.\n")
    return header + yaml.safe_dump({"config": config}, sort_keys=False, allow_unicode=True)


def render_placement(stack: StackConfig) -> str:
    """Where each tenant's jobs go in the cluster (:class:`testbed.placement.Placement`)."""
    return Placement.for_stack(stack).to_yaml()


class ControlPlane(pulumi.ComponentResource):
    """ServiceAccount, ConfigMap, Deployment, ClusterIP Service and a ServiceMonitor for /metrics."""

    def __init__(self, name: str, stack: StackConfig, ns: pulumi.Input[str], mlflow_url: str,
                 storage: MlflowStorage, monitoring: pulumi.Resource, depends_on: list[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:addon:ControlPlane", name, None, opts)
        files = {f"Pulumi.{stack.region.id}.yaml": render_stack_file(stack), PLACEMENT_FILE: render_placement(stack)}
        digest = hashlib.sha256("".join(files.values()).encode()).hexdigest()
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=meta(f"{CONTROL_PLANE}-config", ns, labels(CONTROL_PLANE)), data=files,
            opts=child(self))
        settings = k8s.core.v1.Secret(
            f"{name}-settings", metadata=meta(f"{CONTROL_PLANE}-settings", ns, labels(CONTROL_PLANE)), type="Opaque",
            string_data={"settings.json": pulumi.Output.secret(pulumi.Output.all(
                storage.control_plane_db_uri, storage.job_storage).apply(
                    lambda args: render_settings(stack, args[0], mlflow_url, args[1])))},
            opts=child(self))
        env = {"TESTBED_REGION": stack.region.id, "TESTBED_STACK_DIR": CONFIG_DIR,
               "TESTBED_CONTROL_PLANE_SETTINGS": f"{SETTINGS_DIR}/settings.json"}
        spec = WebService(
            component=CONTROL_PLANE, image=stack.platform.control_plane_image, port=CONTROL_PLANE_PORT,
            replicas=stack.platform.control_plane_replicas,
            env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env.items()],
            volumes=[k8s.core.v1.VolumeArgs(name="config", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                         name=self.config_map.metadata.name)),
                     k8s.core.v1.VolumeArgs(name="settings", secret=k8s.core.v1.SecretVolumeSourceArgs(
                         secret_name=settings.metadata.name))],
            mounts=[k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True),
                    k8s.core.v1.VolumeMountArgs(name="settings", mount_path=SETTINGS_DIR, read_only=True)],
            pod_annotations={"testbed.io/config-sha256": digest}, api_access=True)
        self.account, self.deployment, self.service = deploy(name, self, ns, spec, depends_on=depends_on)
        self.service_monitor = custom_resource(
            f"{name}-monitor", self, MONITORING_API, "ServiceMonitor", meta(CONTROL_PLANE, ns, labels(CONTROL_PLANE)),
            {"selector": {"matchLabels": {"app.kubernetes.io/name": CONTROL_PLANE}},
             # honorLabels: testbed_tenant_info carries its own region label; keep it, not exported_region.
             "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "honorLabels": True,
                            "relabelings": [{"targetLabel": "region", "replacement": stack.region.id,
                                             "action": "replace"}]}]},
            crds_from=[monitoring])
        self.service_account = CONTROL_PLANE
        self.url = service_url(CONTROL_PLANE, PLATFORM_NS, CONTROL_PLANE_PORT)
        self.register_outputs({"url": self.url})
