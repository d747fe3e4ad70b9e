"""The control plane's settings file as Pulumi renders it: valid, job-sized capacity, the jobs' Ray image."""

from __future__ import annotations

import importlib.metadata
import json

from infra.addons.control_plane import render_settings
from infra.naming import CONTROL_PLANE, PLATFORM_NS
from testbed.versions import IMAGES
from testbed.settings import ControlPlaneSettings
from testbed.config import stack_config_from_mapping

DB, MLFLOW_URL, STORAGE = "postgresql://testbed:pw@db:5432/testbed", "http://mlflow:5000", "s3://bucket/jobs"


def _settings(stack) -> ControlPlaneSettings:
    return ControlPlaneSettings.model_validate(json.loads(render_settings(stack, DB, MLFLOW_URL, STORAGE)))


def test_rendered_settings_validate(stacks):
    for region, stack in stacks.items():
        settings = _settings(stack)
        assert settings.backend == "kuberay"
        assert (settings.database_url, settings.mlflow_tracking_uri, settings.storage_path) == (
            DB, MLFLOW_URL, STORAGE)
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


def test_rayjobs_run_the_control_plane_image(stacks):
    """Template jobs import ``workloads``: only the control-plane image carries it (the stock Ray image does not)."""
    for stack in stacks.values():
        assert _settings(stack).ray_image == stack.platform.control_plane_image != IMAGES["ray"].ref
    jeju = stacks["jeju"]
    custom = jeju.model_copy(update={"platform": jeju.platform.model_copy(
        update={"control_plane_image": "registry.example/testbed/control-plane:9.9.9"})})
    assert _settings(custom).ray_image == "registry.example/testbed/control-plane:9.9.9"


def test_ray_image_is_pinned_in_the_versions_table():
    """The one pin of the stock Ray image: the control plane's fallback names it, its Ray is the client's Ray."""
    ray = IMAGES["ray"]
    assert ControlPlaneSettings.model_fields["ray_image"].default == ray.ref
    assert ray.tag.split("-")[0] == importlib.metadata.version("ray")


def test_deployed_secret_names_the_ray_image(runs, stacks):
    for region, run in runs.items():
        secret = run.objects("kubernetes:core/v1:Secret")[f"{PLATFORM_NS}/{CONTROL_PLANE}-settings"]
        settings = ControlPlaneSettings.model_validate(json.loads(secret["stringData"]["settings.json"]))
        assert settings.ray_image == stacks[region].platform.control_plane_image
        assert settings.capacity_gpus == max(p.gpus_per_node for p in stacks[region].node_pools)
