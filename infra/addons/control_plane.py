"""The testbed control plane in-cluster: it reads the same stack model from a ConfigMap."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from infra.addons.mlflow import ADMIN_PASSWORD_FILE as MLFLOW_ADMIN_PASSWORD_FILE
from infra.addons.mlflow import admin_password_volume
from infra.addons.workload import WebService, deploy
from infra.k8s import child, custom_resource, meta
from infra.naming import CONTROL_PLANE, CONTROL_PLANE_PORT, PLATFORM_NS, labels, service_url
from testbed.kube import CONFIG_DIGEST_ANNOTATION, SETTINGS_DIGEST_ANNOTATION
from testbed.placement import Placement
from testbed.settings import ControlPlaneSettings, token_sha256
from infra.storage import MlflowStorage
from testbed.versions import MONITORING_API
from testbed.config import CONFIG_NAMESPACE, STACK_KEYS, StackConfig

CONFIG_DIR = "/etc/testbed"
PLACEMENT_FILE = "placement.yaml"
SETTINGS_DIR = "/etc/testbed-settings"
SETTINGS_FILE = "settings.json"
# The Secret (in the platform namespace) holding the token Prometheus scrapes /metrics with.
METRICS_TOKEN_SECRET, METRICS_TOKEN_KEY = f"{CONTROL_PLANE}-metrics-token", "token"
# The in-cluster backend creates KubeRay RayJobs (DESIGN.md, "Cluster" mode).
CLUSTER_BACKEND = "kuberay"
# 43 characters of [A-Za-z0-9]: 256 random bits, as many as the tokens the control plane issues.
OPERATOR_TOKEN_LENGTH = 43
# Each sync round lists RayJobs and Workloads once per tenant namespace with active jobs; start and end times
# come from the RayJobs themselves (Ray's), so a slower round costs no billing accuracy.
CLUSTER_SYNC_INTERVAL_SECONDS = 2.0


def render_settings(
    stack: StackConfig,
    database_url: str,
    mlflow_url: str,
    job_storage: str,
    *,
    ray_image: str,
    operator_token_sha256: str | None = None,
    monitoring_token_sha256: str | None = None,
    program_office_token_sha256: str | None = None,
    prometheus_url: str | None = None,
) -> str:
    """The control plane's settings file (``TESTBED_CONTROL_PLANE_SETTINGS``); a Secret, as it holds the DB URL.

    ``ray_image`` is the jobs' image: the testbed image the stack built (by digest), not the stock ``IMAGES["ray"]``,
    because template jobs import this repository's ``workloads`` package, which only the testbed image carries (with
    the same pinned Ray). It carries the operator token's hash only; the clear token is the stack's secret output.
    """
    pools = stack.node_pools
    return ControlPlaneSettings(
        stack_file=f"{CONFIG_DIR}/Pulumi.{stack.region.id}.yaml",
        database_url=database_url,
        backend=CLUSTER_BACKEND,
        placement_file=f"{CONFIG_DIR}/{PLACEMENT_FILE}",
        mlflow_tracking_uri=mlflow_url,
        storage_path=job_storage,
        ray_image=ray_image,
        mlflow_admin_password_file=MLFLOW_ADMIN_PASSWORD_FILE,
        # The kuberay backend puts a job's whole budget on one worker pod: the largest job is one node's worth.
        capacity_cpus=max(p.cpus_per_node for p in pools),
        capacity_gpus=max(p.gpus_per_node for p in pools),
        capacity_memory=max(p.memory_per_node for p in pools),
        host="0.0.0.0",
        port=CONTROL_PLANE_PORT,
        operator_token_sha256=operator_token_sha256,
        monitoring_token_sha256=monitoring_token_sha256,
        program_office_token_sha256=program_office_token_sha256,
        prometheus_url=prometheus_url,  # idle GPUs: DCGM utilisation joined to jobs by the testbed.gpu.idle rules
        sync_interval_seconds=CLUSTER_SYNC_INTERVAL_SECONDS,
    ).to_json()


def container_args() -> list[str]:
    """The control plane's command line in the testbed image."""
    return ["python", "-m", "operators.control_plane", "--settings", f"{SETTINGS_DIR}/{SETTINGS_FILE}"]


def render_stack_file(stack: StackConfig) -> str:
    """The stack's ``testbed:`` config as a ``Pulumi.<region>.yaml`` document (``load_stack_file`` reads it)."""
    data = stack.model_dump(mode="json")
    config = {f"{CONFIG_NAMESPACE}:{key}": data[field] for key, field in STACK_KEYS.items()}
    header = f"# Rendered by Pulumi from Pulumi.{stack.region.id}.yaml; edit that file, not this one.\n"
    return header + yaml.safe_dump({"config": config}, sort_keys=False, allow_unicode=True)


def render_placement(stack: StackConfig) -> str:
    """Where each tenant's jobs go in the cluster (:class:`testbed.placement.Placement`)."""
    return Placement.for_stack(stack).to_yaml()


def stack_token(name: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    """A token the stack generates once and keeps in its state as a secret (operator: first login; monitoring)."""
    generated = random.RandomPassword(name, length=OPERATOR_TOKEN_LENGTH, special=False, opts=child(parent))
    return pulumi.Output.secret(generated.result)


class ControlPlane(pulumi.ComponentResource):
    """ServiceAccount, ConfigMap, Deployment, ClusterIP Service, a ServiceMonitor for /metrics, the operator token."""

    def __init__(
        self,
        name: str,
        stack: StackConfig,
        image: pulumi.Input[str],
        ns: pulumi.Input[str],
        mlflow_url: str,
        storage: MlflowStorage,
        monitoring: pulumi.Resource,
        depends_on: list[pulumi.Resource],
        prometheus_url: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("testbed:addon:ControlPlane", name, None, opts)
        files = {f"Pulumi.{stack.region.id}.yaml": render_stack_file(stack), PLACEMENT_FILE: render_placement(stack)}
        digest = hashlib.sha256("".join(files.values()).encode()).hexdigest()
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=meta(f"{CONTROL_PLANE}-config", ns, labels(CONTROL_PLANE)),
            data=files,
            opts=child(self),
        )
        self.operator_token = stack_token(f"{name}-operator-token", self)
        # Prometheus scrapes /metrics with its own token (it reads usage and nothing else), kept in a Secret here.
        monitoring_token = stack_token(f"{name}-monitoring-token", self)
        metrics_secret = k8s.core.v1.Secret(
            f"{name}-metrics-token",
            metadata=meta(METRICS_TOKEN_SECRET, ns, labels(CONTROL_PLANE)),
            type="Opaque",
            string_data={METRICS_TOKEN_KEY: monitoring_token},
            opts=child(self),
        )
        # The program office reads every tenant's accounts and writes nothing: its token is a secret stack output.
        self.program_office_token = stack_token(f"{name}-program-office-token", self)
        settings_json = pulumi.Output.secret(
            pulumi.Output.all(
                storage.control_plane_db_uri,
                storage.job_storage,
                image,
                self.operator_token.apply(token_sha256),
                monitoring_token.apply(token_sha256),
                self.program_office_token.apply(token_sha256),
            ).apply(
                lambda args: render_settings(
                    stack,
                    args[0],
                    mlflow_url,
                    args[1],
                    ray_image=args[2],
                    operator_token_sha256=args[3],
                    monitoring_token_sha256=args[4],
                    program_office_token_sha256=args[5],
                    prometheus_url=prometheus_url,
                )
            )
        )
        settings = k8s.core.v1.Secret(
            f"{name}-settings",
            metadata=meta(f"{CONTROL_PLANE}-settings", ns, labels(CONTROL_PLANE)),
            type="Opaque",
            string_data={SETTINGS_FILE: settings_json},
            opts=child(self),
        )
        mlflow_admin = admin_password_volume()  # MLflow's admin password, to provision the tenants' identities
        env = {
            "TESTBED_REGION": stack.region.id,
            "TESTBED_STACK_DIR": CONFIG_DIR,
            "TESTBED_CONTROL_PLANE_SETTINGS": f"{SETTINGS_DIR}/{SETTINGS_FILE}",
        }
        spec = WebService(
            component=CONTROL_PLANE,
            image=image,
            port=CONTROL_PLANE_PORT,
            args=container_args(),
            replicas=stack.platform.control_plane_replicas,
            env=[*(k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env.items()), *storage.control_plane_env],
            volumes=[
                k8s.core.v1.VolumeArgs(
                    name="config", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=self.config_map.metadata.name)
                ),
                k8s.core.v1.VolumeArgs(
                    name="settings", secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=settings.metadata.name)
                ),
                mlflow_admin[0],
            ],
            mounts=[
                k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True),
                k8s.core.v1.VolumeMountArgs(name="settings", mount_path=SETTINGS_DIR, read_only=True),
                mlflow_admin[1],
            ],
            # Settings are read at start: a new operator token (or database URL) rolls the pods.
            pod_annotations={
                CONFIG_DIGEST_ANNOTATION: digest,
                SETTINGS_DIGEST_ANNOTATION: settings_json.apply(lambda text: hashlib.sha256(text.encode()).hexdigest()),
            },
            api_access=True,
        )
        self.account, self.deployment, self.service = deploy(name, self, ns, spec, depends_on=depends_on)
        self.service_monitor = custom_resource(
            f"{name}-monitor",
            self,
            MONITORING_API,
            "ServiceMonitor",
            meta(CONTROL_PLANE, ns, labels(CONTROL_PLANE)),
            {
                "selector": {"matchLabels": {"app.kubernetes.io/name": CONTROL_PLANE}},
                # honorLabels: testbed_tenant_info carries its own region label; keep it, not exported_region.
                "endpoints": [
                    {
                        "port": "http",
                        "path": "/metrics",
                        "interval": "30s",
                        "honorLabels": True,
                        "authorization": {
                            "type": "Bearer",
                            "credentials": {"name": METRICS_TOKEN_SECRET, "key": METRICS_TOKEN_KEY},
                        },
                        "relabelings": [{"targetLabel": "region", "replacement": stack.region.id, "action": "replace"}],
                    }
                ],
            },
            crds_from=[monitoring, metrics_secret],
        )
        self.service_account = CONTROL_PLANE
        self.url = service_url(CONTROL_PLANE, PLATFORM_NS, CONTROL_PLANE_PORT)
        self.register_outputs({"url": self.url})
