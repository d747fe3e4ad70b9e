"""The testbed image: every stack builds and pushes it, and deploys it by digest; nothing runs an unpublished image."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pulumi
import pytest

from infra.addons.control_plane import container_args
from infra.addons.mlflow import allowed_hosts, server_args
from infra.image import CONTEXT, build_args, image_tag
from infra.naming import CONTROL_PLANE, MLFLOW, PLATFORM_NS
from tests.infra.harness import (
    FAKE_KUBECONFIG,
    config_error,
    load_stack_document,
    run_program,
    run_region,
    stack_config,
)
from testbed.config import repo_root
from testbed.settings import ControlPlaneSettings
from testbed.versions import IMAGES

IMAGE_TYPE = "docker-build:index:Image"
BY_DIGEST = re.compile(r"^(?P<repository>[^@:]+(:[0-9]+)?(/[^@:]+)*)@sha256:[0-9a-f]{64}$")
# Kinds whose objects carry a pod template (or are a pod), and where the pod spec sits in them.
POD_SPECS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}


def _pod_images(run) -> dict[str, str]:
    """``<kind> <namespace>/<name> <container>`` -> image, for every container of every pod the stack defines."""
    images = {}
    for r in run.kubernetes_objects():
        path = POD_SPECS.get(r.inputs.get("kind", ""))
        if path is None:
            continue
        spec = r.inputs
        for key in path:
            spec = spec.get(key) or {}
        meta = r.inputs.get("metadata") or {}
        for field in ("initContainers", "containers", "ephemeralContainers"):
            for container in spec.get(field) or []:
                images[f"{r.inputs['kind']} {meta.get('namespace')}/{meta.get('name')} {container['name']}"] = (
                    container["image"]
                )
    return images


def _built(run):
    [image] = run.of_type(IMAGE_TYPE)
    return image


def _settings(run) -> ControlPlaneSettings:
    secret = run.objects("kubernetes:core/v1:Secret")[f"{PLATFORM_NS}/{CONTROL_PLANE}-settings"]
    return ControlPlaneSettings.model_validate(json.loads(secret["stringData"]["settings.json"]))


def test_every_pod_runs_the_built_image_by_digest_or_a_pinned_image(runs):
    pinned = {image.ref for image in IMAGES.values()}
    for region, run in runs.items():
        built = run.outputs["image"]
        match = BY_DIGEST.match(built)
        assert match, f"{region}: {built} is not <repository>@sha256:<digest>"
        image = _built(run)
        assert built == f"{match['repository']}@{image.outputs['digest']}"
        assert image.inputs["push"] is True
        assert [t.rsplit(":", 1)[0] for t in image.inputs["tags"]] == [match["repository"]]  # pushed where it runs
        images = _pod_images(run)
        assert images
        for where, ref in images.items():
            assert ref == built or ref in pinned, f"{region}: {where} runs {ref}, which nobody publishes"
        # The platform's own services and the jobs all run the built image.
        assert images[f"Deployment {PLATFORM_NS}/{CONTROL_PLANE} {CONTROL_PLANE}"] == built
        assert images[f"Deployment {PLATFORM_NS}/{MLFLOW} {MLFLOW}"] == built
        assert _settings(run).ray_image == built


def test_images_pinned_in_the_table_are_exact_tags():
    for name, image in IMAGES.items():
        assert image.tag and image.tag != "latest" and ":" not in image.repository.rsplit("/", 1)[-1], name


def test_eks_builds_into_its_own_ecr_repository(runs, stacks):
    for region, run in runs.items():
        stack = stacks[region]
        repositories = run.of_type("aws:ecr/repository:Repository")
        if stack.cluster.provider != "eks":
            assert not repositories
            continue
        [repository] = repositories
        assert repository.inputs["name"] == f"testbed-{region}"
        assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        # The repository lives in the cluster's AWS region (the nodes pull from there).
        [provider] = [r for r in run.of_type("pulumi:providers:aws") if f"::{r.name}::" in repository.provider]
        assert provider.inputs["region"] == stack.cluster.location
        [policy] = run.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
        assert policy.inputs["repository"] == repository.outputs["name"]
        image = _built(run)
        url = repository.outputs["repositoryUrl"]
        assert run.outputs["image"].startswith(f"{url}@sha256:")
        # Pushed with ECR's token for that registry.
        assert image.inputs["registries"] == [{"address": url, "username": "AWS", "password": "mock-ecr-token"}]


def test_the_build_is_this_repository_with_the_pinned_base(runs, stacks):
    for region, run in runs.items():
        image = _built(run).inputs
        # The checkout root, relative to the working directory (`.` under `pulumi up`): the same on every machine.
        where = Path(os.path.relpath(repo_root(), Path.cwd()))
        assert image["context"] == {"location": where.as_posix()}
        assert image["dockerfile"] == {"location": (where / "Dockerfile").as_posix()}
        assert image["buildArgs"] == build_args(stacks[region])
        assert image["buildArgs"]["PYTHON_IMAGE"] == IMAGES["python"].ref
        assert image["platforms"] == ["linux/amd64"]
        assert image["buildOnPreview"] is False
        assert image["tags"][0].endswith(":" + image_tag(build_args(stacks[region]), repo_root()))


def test_services_run_the_image_entrypoints_as_non_root(runs):
    for run in runs.values():
        deployments = run.objects("kubernetes:apps/v1:Deployment")
        for name, args in ((CONTROL_PLANE, container_args()), (MLFLOW, server_args())):
            [container] = deployments[f"{PLATFORM_NS}/{name}"]["spec"]["template"]["spec"]["containers"]
            assert container["args"] == args
            assert container["securityContext"]["runAsNonRoot"] is True


def test_mlflow_answers_its_service_names():
    """MLflow refuses Host headers it does not know: the jobs and the control plane use the Service's FQDN."""
    args = server_args()
    hosts = args[args.index("--allowed-hosts") + 1].split(",")
    assert hosts == allowed_hosts()
    assert f"{MLFLOW}.{PLATFORM_NS}.svc.cluster.local:5000" in hosts and "*" not in hosts


def test_existing_pushes_to_the_configured_registry(runs):
    run = runs["jeonnam"]
    image = _built(run).inputs
    registry = load_stack_document("jeonnam")["config"]["testbed:platform"]["image_registry"]
    assert image["tags"][0].startswith(f"{registry}/testbed-jeonnam:")
    assert run.outputs["image"].startswith(f"{registry}/testbed-jeonnam@sha256:")
    assert "registries" not in image  # no credentials configured: the docker login of the machine running Pulumi


def _existing_with_credentials():
    document = load_stack_document("jeonnam")
    document["config"]["testbed:platform"].update(
        image_registry="harbor.jeonnam.example:8443/testbed",
        image_registry_username="robot$testbed",
        image_registry_password_secret="registryPassword",
    )
    return document


def test_existing_registry_credentials_come_from_secret_config():
    run = run_program(
        "jeonnam",
        stack_config(_existing_with_credentials()),
        {"kubeconfig": FAKE_KUBECONFIG, "registryPassword": "s3cret"},
    )
    assert _built(run).inputs["registries"] == [
        {"address": "harbor.jeonnam.example:8443", "username": "robot$testbed", "password": "s3cret"}
    ]
    assert run.outputs["image"].startswith("harbor.jeonnam.example:8443/testbed/testbed-jeonnam@sha256:")


def test_missing_registry_secret_is_named():
    with pytest.raises(pulumi.RunError) as info:
        run_program("jeonnam", stack_config(_existing_with_credentials()), {"kubeconfig": FAKE_KUBECONFIG})
    assert "config.regional-ai-testbed:registryPassword: is required but missing" in str(info.value)


def test_existing_needs_a_registry():
    message = config_error("jeonnam", lambda c: c["testbed:platform"].pop("image_registry"))
    assert "Pulumi.jeonnam.yaml: config.testbed:platform.image_registry: is required for provider 'existing'" in message
    message = config_error("jeonnam", lambda c: c.pop("testbed:platform"))
    assert "config.testbed:platform.image_registry: is required" in message


def test_registry_keys_are_checked():
    message = config_error("gyeongnam", lambda c: c["testbed:platform"].update(image_registry="ghcr.io/someone"))
    assert "config.testbed:platform.image_registry: is only for provider 'existing'" in message
    message = config_error("jeonnam", lambda c: c["testbed:platform"].update(image_registry="https://harbor.example/x"))
    assert "config.testbed:platform.image_registry: String should match pattern" in message
    message = config_error("jeonnam", lambda c: c["testbed:platform"].update(image_registry_username="robot"))
    assert "config.testbed:platform: image_registry_username and image_registry_password_secret go together" in message
    # The ghcr.io default is gone: a stack file still naming it is told the key is unknown.
    message = config_error(
        "daegu",
        lambda c: c["testbed:platform"].update(control_plane_image="ghcr.io/regional-ai-testbed/control-plane:0.1.0"),
    )
    assert "config.testbed:platform.control_plane_image: is not a known key" in message


def test_torch_index_is_a_build_arg_and_changes_the_tag(runs):
    url = "https://download.pytorch.org/whl/cpu"
    document = load_stack_document("ulsan")
    document["config"]["testbed:platform"]["torch_index_url"] = url
    image = _built(run_region("ulsan", document)).inputs
    assert image["buildArgs"]["TORCH_INDEX_URL"] == url
    assert image["tags"] != _built(runs["ulsan"]).inputs["tags"]


def test_image_tag_follows_the_build_inputs(tmp_path):
    root = tmp_path / "repo"
    for entry in CONTEXT:
        source = repo_root() / entry
        if source.is_dir():
            shutil.copytree(source, root / entry, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (root / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, root / entry)
    args = {"PYTHON_IMAGE": IMAGES["python"].ref, "TORCH_INDEX_URL": ""}
    tag = image_tag(args, root)
    assert tag == image_tag(args, repo_root())  # what the build sees, nothing else
    assert re.fullmatch(r"\d+\.\d+\.\d+-[0-9a-f]{16}", tag)
    (root / "tests").mkdir()
    (root / "tests" / "new.py").write_text("x = 1\n")  # outside the context
    (root / "workloads" / "__pycache__").mkdir(exist_ok=True)
    (root / "workloads" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert image_tag(args, root) == tag
    assert image_tag({**args, "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cpu"}, root) != tag
    (root / "workloads" / "train.py").write_text((root / "workloads" / "train.py").read_text() + "\n# changed\n")
    assert image_tag(args, root) != tag


def test_database_uris_name_the_driver_in_the_image(runs):
    """SQLAlchemy's bare postgresql:// is psycopg (3) since 2.1; the image has psycopg2 (the postgres extra)."""
    for run in runs.values():
        secret = run.objects("kubernetes:core/v1:Secret")[f"{PLATFORM_NS}/platform-db"]["stringData"]
        assert secret["mlflow-uri"].startswith("postgresql+psycopg2://")
        assert secret["testbed-uri"].startswith("postgresql+psycopg2://")
        assert secret["admin-uri"].startswith("postgresql://")  # libpq (psql, pg_isready) in the init Job
        assert _settings(run).database_url == secret["testbed-uri"]
