"""The control plane's settings file as Pulumi renders it: valid, job-sized capacity, the jobs' Ray image."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json

from infra.addons.control_plane import METRICS_TOKEN_KEY, METRICS_TOKEN_SECRET, render_settings
from testbed.kube import SETTINGS_DIGEST_ANNOTATION
from infra.naming import CONTROL_PLANE, PLATFORM_NS
from testbed.versions import IMAGES
from testbed.settings import ControlPlaneSettings, token_sha256
from testbed.config import stack_config_from_mapping

DB, MLFLOW_URL, STORAGE = "postgresql://testbed:pw@db:5432/testbed", "http://mlflow:5000", "s3://bucket/jobs"
IMAGE = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/testbed-jeju@sha256:" + "0" * 64


def _settings(stack, image: str = IMAGE) -> ControlPlaneSettings:
    return ControlPlaneSettings.model_validate(
        json.loads(render_settings(stack, DB, MLFLOW_URL, STORAGE, ray_image=image))
    )


def test_rendered_settings_validate(stacks):
    for region, stack in stacks.items():
        settings = _settings(stack)
        assert settings.backend == "kuberay"
        assert (settings.database_url, settings.mlflow_tracking_uri, settings.storage_path) == (DB, MLFLOW_URL, STORAGE)
        assert str(settings.stack_file) == f"/etc/testbed/Pulumi.{region}.yaml"


def test_capacity_is_one_node_not_the_pool(stacks):
    """The kuberay backend puts a job on one worker pod: a job larger than any node would never schedule."""
    discriminating = False
    for stack in stacks.values():
        settings = _settings(stack)
        assert settings.capacity_gpus == max(p.gpus_per_node for p in stack.node_pools)
        assert settings.capacity_cpus == max(p.cpus_per_node for p in stack.node_pools)
        assert settings.capacity_memory == max(p.memory_per_node for p in stack.node_pools)
        discriminating |= settings.capacity_gpus < max(p.max_gpus for p in stack.node_pools)
    assert discriminating  # some stack has a multi-node pool, so pool size and node size differ


def test_capacity_is_the_largest_node_of_any_pool(document):
    config = dict(document["config"])
    pools = [dict(p) for p in config["testbed:nodePools"]]
    pools[0].update(gpus_per_node=16, cpus_per_node=8)  # most GPUs per node on one pool, fewest CPUs
    config["testbed:nodePools"] = pools
    stack = stack_config_from_mapping(config)
    settings = _settings(stack)
    assert settings.capacity_gpus == 16
    assert settings.capacity_cpus == max([8] + [p.cpus_per_node for p in stack.node_pools[1:]])


def test_rayjobs_run_the_testbed_image(stacks):
    """Template jobs import ``workloads``: only the testbed image carries it (the stock Ray image does not)."""
    for stack in stacks.values():
        assert _settings(stack).ray_image == IMAGE != IMAGES["ray"].ref
    other = "registry.example/testbed/testbed-jeonnam@sha256:" + "1" * 64
    assert _settings(stacks["jeonnam"], other).ray_image == other


def test_ray_image_is_pinned_in_the_versions_table():
    """The one pin of the stock Ray image: the control plane's fallback names it, its Ray is the client's Ray."""
    ray = IMAGES["ray"]
    assert ControlPlaneSettings.model_fields["ray_image"].default == ray.ref
    assert ray.tag.split("-")[0] == importlib.metadata.version("ray")


def test_deployed_secret_names_the_ray_image(runs, stacks):
    for region, run in runs.items():
        secret = run.objects("kubernetes:core/v1:Secret")[f"{PLATFORM_NS}/{CONTROL_PLANE}-settings"]
        settings = ControlPlaneSettings.model_validate(json.loads(secret["stringData"]["settings.json"]))
        assert settings.ray_image == run.outputs["image"]  # the image the stack built, by digest
        assert settings.capacity_gpus == max(p.gpus_per_node for p in stacks[region].node_pools)


def test_operator_token_is_a_secret_output_and_only_its_hash_reaches_the_control_plane(runs):
    """First login: `pulumi stack output operator_token --show-secrets`; the settings Secret holds its SHA-256 only."""
    for region, run in runs.items():
        token = run.outputs["operator_token"]
        assert "operator_token" in run.secret_outputs, region
        [generated] = [
            r for r in run.of_type("random:index/randomPassword:RandomPassword") if r.name.endswith("-operator-token")
        ]
        assert generated.inputs["length"] >= 43 and generated.inputs["special"] is False  # 256 bits, URL-safe
        assert token == generated.outputs["result"]
        secret = run.objects("kubernetes:core/v1:Secret")[f"{PLATFORM_NS}/{CONTROL_PLANE}-settings"]
        text = secret["stringData"]["settings.json"]
        assert ControlPlaneSettings.model_validate(json.loads(text)).operator_token_sha256 == token_sha256(token)
        assert token not in text
        everything_else = json.dumps([r.inputs for r in run.resources if r is not generated])
        assert token not in everything_else, f"{region}: the clear operator token is in some resource's inputs"
        # A new token (pulumi up --replace) changes the settings, and the pods that read them at start roll.
        deployment = run.objects("kubernetes:apps/v1:Deployment")[f"{PLATFORM_NS}/{CONTROL_PLANE}"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations[SETTINGS_DIGEST_ANNOTATION] == hashlib.sha256(text.encode()).hexdigest()


def test_prometheus_scrapes_metrics_with_its_own_token(runs):
    """/metrics needs a token: the ServiceMonitor sends the stack's monitoring token from a Secret beside it, and
    the control plane knows only that token's SHA-256 (a role that reads /metrics and nothing else)."""
    for region, run in runs.items():
        secrets_ = run.objects("kubernetes:core/v1:Secret")
        token = secrets_[f"{PLATFORM_NS}/{METRICS_TOKEN_SECRET}"]["stringData"][METRICS_TOKEN_KEY]
        [generated] = [
            r for r in run.of_type("random:index/randomPassword:RandomPassword") if r.name.endswith("-monitoring-token")
        ]
        assert token == generated.outputs["result"] != run.outputs["operator_token"]
        monitor = run.objects("kubernetes:monitoring.coreos.com/v1:ServiceMonitor")[f"{PLATFORM_NS}/{CONTROL_PLANE}"]
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["authorization"] == {
            "type": "Bearer",
            "credentials": {"name": METRICS_TOKEN_SECRET, "key": METRICS_TOKEN_KEY},
        }
        text = secrets_[f"{PLATFORM_NS}/{CONTROL_PLANE}-settings"]["stringData"]["settings.json"]
        assert ControlPlaneSettings.model_validate(json.loads(text)).monitoring_token_sha256 == token_sha256(token)
        assert token not in text, region
        assert "monitoring_token" not in run.outputs  # Prometheus's, not the engineer's
