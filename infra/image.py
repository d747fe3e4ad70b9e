"""The testbed image: built from this repository's Dockerfile by the stack, pushed, and deployed by digest.

One image runs the control plane, the MLflow server and the jobs' RayJob pods (README, "The testbed image").
An eks stack pushes it to an ECR repository of its own; an existing cluster's stack to
``testbed:platform.image_registry``. Everything deploys ``<repository>@sha256:<digest>``, so a pod runs exactly the
build this stack pushed, whatever happens to tags later.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from infra import stack as stack_config
from infra.k8s import child
from testbed.config import StackConfig, repo_root
from testbed.versions import IMAGES

DOCKERFILE = "Dockerfile"
# What the build is given: .dockerignore lets exactly these through (a test keeps the two lists equal). The image's
# tag is a hash of them and of the build args.
CONTEXT = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "testbed",
    "operators",
    "workloads",
    "infra",
    "embedded",
)
# The node pools are x86_64 (testbed.versions.EKS_AMI_TYPES); build for them whatever machine runs Pulumi.
PLATFORM = docker_build.Platform.LINUX_AMD64
# ECR keeps this many images; untagged ones (a tag moved to a rebuild) go after UNTAGGED_DAYS.
KEEP_IMAGES, UNTAGGED_DAYS = 30, 14


def repository_name(stack: StackConfig) -> str:
    return f"testbed-{stack.region.id}"


def build_args(stack: StackConfig) -> dict[str, str]:
    """The Dockerfile's ARGs: the base image from the version table, and where torch comes from."""
    return {"PYTHON_IMAGE": IMAGES["python"].ref, "TORCH_INDEX_URL": stack.platform.torch_index_url or ""}


def context_files(root: Path) -> list[Path]:
    """The files the build context holds (what .dockerignore lets through)."""
    files: list[Path] = []
    for entry in CONTEXT:
        path = root / entry
        if path.is_dir():
            files += [
                p
                for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.relative_to(root).parts and p.suffix != ".pyc"
            ]
        elif path.is_file():
            files.append(path)
    return sorted(files)


def image_tag(args: dict[str, str], root: Path) -> str:
    """``<version>-<hash of the context and build args>``: a new tag exactly when the build's inputs change."""
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode())
    for path in context_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    version = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    return f"{version}-{digest.hexdigest()[:16]}"


class PlatformImage(pulumi.ComponentResource):
    """The registry's repository (ECR on eks), the build and push; ``ref`` is ``<repository>@sha256:...``."""

    def __init__(self, name: str, stack: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:image:PlatformImage", name, None, opts)
        if stack.cluster.provider == "eks":
            repository, registry = self._ecr(name, stack)
        else:
            repository, registry = self._configured(stack)
        root = repo_root()
        args = build_args(stack)
        # Paths relative to the working directory (the project root under `pulumi up`): the same on every checkout.
        where = Path(os.path.relpath(root, Path.cwd()))
        self.image = docker_build.Image(
            name,
            context=docker_build.BuildContextArgs(location=where.as_posix()),
            dockerfile=docker_build.DockerfileArgs(location=(where / DOCKERFILE).as_posix()),
            build_args=args,
            platforms=[PLATFORM],
            push=True,
            tags=[pulumi.Output.concat(repository, ":", image_tag(args, root))],
            registries=[registry] if registry else None,
            # A preview would build the whole (multi-GB) image without pushing it; `pulumi up` builds it.
            build_on_preview=False,
            opts=child(self),
        )
        self.repository = pulumi.Output.from_input(repository)
        self.ref = pulumi.Output.concat(repository, "@", self.image.digest)
        self.register_outputs({"ref": self.ref})

    def _ecr(self, name: str, stack: StackConfig) -> tuple[pulumi.Output[str], docker_build.RegistryArgs]:
        """A private ECR repository in the cluster's AWS region (the nodes' role may pull from it)."""
        provider = aws.Provider(f"{name}-aws", region=stack.cluster.location, opts=child(self))
        opts = child(self, provider=provider)
        # Tags stay mutable: pods run the digest, never a tag, and docker-build rebuilds (for instance from another
        # checkout) under the same source tag; builds are not bit-for-bit reproducible, so an immutable tag would
        # refuse that push. Images are rebuilt from source, so `pulumi destroy` may delete them with the repository.
        repository = aws.ecr.Repository(
            name,
            name=repository_name(stack),
            image_tag_mutability="MUTABLE",
            force_delete=True,
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            tags={"testbed.io/region": stack.region.id},
            opts=opts,
        )
        aws.ecr.LifecyclePolicy(
            name,
            repository=repository.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": f"untagged images after {UNTAGGED_DAYS} days",
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "sinceImagePushed",
                                "countUnit": "days",
                                "countNumber": UNTAGGED_DAYS,
                            },
                            "action": {"type": "expire"},
                        },
                        {
                            "rulePriority": 2,
                            "description": f"keep the {KEEP_IMAGES} newest images",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": KEEP_IMAGES,
                            },
                            "action": {"type": "expire"},
                        },
                    ]
                }
            ),
            opts=opts,
        )
        token = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(provider=provider, parent=self)
        )
        registry = docker_build.RegistryArgs(
            address=repository.repository_url, username=token.user_name, password=pulumi.Output.secret(token.password)
        )
        return repository.repository_url, registry

    def _configured(self, stack: StackConfig) -> tuple[str, docker_build.RegistryArgs | None]:
        """``testbed:platform.image_registry``; pushed with its credentials if given, else the host's docker login."""
        platform = stack.platform
        assert platform.image_registry  # the model requires it for provider=existing
        repository = f"{platform.image_registry}/{repository_name(stack)}"
        if not platform.image_registry_password_secret:
            return repository, None
        host = platform.image_registry.split("/", 1)[0]
        return repository, docker_build.RegistryArgs(
            address=host,
            username=platform.image_registry_username,
            password=stack_config.secret(platform.image_registry_password_secret),
        )
