"""Region, node pool, tenant, grant and quota models, loaded from ``Pulumi.<region>.yaml``.

The stack file is the one source of truth: Pulumi builds namespaces, quotas and queues from it
and the control plane admits jobs against it. Every key lives under the ``testbed:`` namespace of
the stack's ``config:`` block, e.g. ``testbed:tenants``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from testbed.errors import validation_problems
from testbed.money_config import Budget, Grant, Price, money_problems
from testbed.stack_model import CONFIG_NAMESPACE, LOCAL_POOL, SLUG, StackModel
from testbed.money import (
    kst_date,
)
from testbed.quantities import MemoryBytes
from testbed.kube import DEFAULT_GPU_TAINT, Taint

REGIONS = ("gyeongnam", "daegu", "ulsan", "jeonnam", "jeju")
# A registry host (optional port) and optional namespace path, without scheme or tag: ghcr.io/org, 10.0.0.5:5000/testbed.
IMAGE_REGISTRY = r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"


class ConfigError(ValueError):
    """A stack file is wrong: names the file, the key path and the reason."""

    def __init__(self, file: str | Path, problems: list[tuple[str, str]]):
        self.file = str(file)
        self.problems = problems
        lines = [f"{self.file}: {path}: {reason}" for path, reason in problems]
        super().__init__("\n".join(lines))


class RegionInfo(StackModel):
    """Which region of the program this stack serves."""

    id: Literal["gyeongnam", "daegu", "ulsan", "jeonnam", "jeju"]
    display_name: str
    lead_institution: str
    industries: list[str] = Field(min_length=1)


class ClusterConfig(StackModel):
    """Where the Kubernetes cluster comes from."""

    provider: Literal["eks", "existing"]
    location: str = "ap-northeast-2"
    kubernetes_version: str = Field(default="1.33", pattern=r"^1\.\d{2}$")
    availability_zones: int = Field(default=3, ge=2, le=6)
    system_instance_type: str = "m6i.xlarge"
    system_nodes: int = Field(default=2, ge=1, le=20)
    vpc_cidr: str = "10.40.0.0/16"
    # For provider=existing: the name of the Pulumi secret config key holding the kubeconfig.
    kubeconfig_secret: str | None = None

    @model_validator(mode="after")
    def _existing_needs_kubeconfig(self) -> "ClusterConfig":
        if self.provider == "existing" and not self.kubeconfig_secret:
            raise ValueError("provider 'existing' needs kubeconfig_secret (a secret config key)")
        return self


class NodePool(StackModel):
    """A pool of GPU nodes: one managed node group on eks, a labelled node set on existing."""

    name: str = Field(pattern=SLUG)
    gpu_model: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="e.g. a10g, l4, a100, h100")
    gpus_per_node: int = Field(ge=1, le=16)
    cpus_per_node: int = Field(ge=1)
    memory_per_node: MemoryBytes
    instance_types: list[str] = Field(default_factory=list)
    capacity_type: Literal["on-demand", "spot"] = "on-demand"
    min_size: int = Field(default=0, ge=0)
    max_size: int = Field(ge=1)
    node_labels: dict[str, str] = Field(default_factory=dict)
    # Taints the pool's nodes carry, kubectl syntax 'key=value:Effect' (eks sets them, existing declares them).
    taints: list[str] = Field(default_factory=lambda: [DEFAULT_GPU_TAINT])

    @field_validator("taints")
    @classmethod
    def _taint_syntax(cls, taints: list[str]) -> list[str]:
        for taint in taints:
            Taint.parse(taint)
        return taints

    @property
    def parsed_taints(self) -> list[Taint]:
        return [Taint.parse(t) for t in self.taints]

    @model_validator(mode="after")
    def _sizes(self) -> "NodePool":
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} is larger than max_size {self.max_size}")
        return self

    @property
    def max_gpus(self) -> int:
        return self.gpus_per_node * self.max_size

    @property
    def max_cpus(self) -> int:
        return self.cpus_per_node * self.max_size

    @property
    def max_memory(self) -> int:
        return self.memory_per_node * self.max_size


class Quota(StackModel):
    """What a tenant may hold at once (concurrent requests, not hours)."""

    cpus: int = Field(ge=1)
    gpus: int = Field(ge=0)
    memory: MemoryBytes
    max_running_jobs: int = Field(default=4, ge=1)
    max_runtime_seconds: int = Field(default=86400, ge=1, description="cap on any job's maximum run time")


class Tenant(StackModel):
    """A company of the program. Sample tenants are fictional and must say so."""

    id: str = Field(pattern=SLUG)
    name: str = Field(min_length=1)
    industry: str = Field(min_length=1)
    sample: bool = False
    grant: Grant
    quota: Quota
    gpu_pool: str | None = Field(default=None, description="node pool whose GPUs the tenant uses")
    # Stop a job of this tenant once its GPUs have been idle this many minutes (None: flag and report only).
    idle_stop_minutes: float | None = Field(default=None, gt=0)


class PlatformConfig(StackModel):
    """Options for the add-ons deployed on the cluster."""

    control_plane_replicas: int = Field(default=2, ge=1)
    # The testbed image (control plane, MLflow, RayJob pods) is built by the stack from the repository's Dockerfile
    # and deployed by digest: eks pushes it to an ECR repository the stack creates; existing clusters name a
    # registry (host[:port][/namespace]) their nodes can pull from; the image goes to <image_registry>/testbed-<region>.
    image_registry: str | None = Field(default=None, pattern=IMAGE_REGISTRY)
    # Credentials for pushing there (both or neither; without them the Docker credentials of the machine running
    # Pulumi are used): a user name, and the name of a Pulumi secret config key holding the password or token.
    image_registry_username: str | None = None
    image_registry_password_secret: str | None = None
    # A PyTorch wheel index for the image's torch (e.g. https://download.pytorch.org/whl/cu128); unset: PyPI's
    # torch, the CUDA build on linux/amd64 (see README, "The testbed image").
    torch_index_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    gpu_operator: bool = True
    grafana_admin_secret: str | None = None
    mlflow_bucket_prefix: str = "testbed-mlflow"
    # Kueue: a tenant may borrow this fraction of its nominal quota from idle quota in the region's cohort.
    borrowing_ratio: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _registry_credentials(self) -> "PlatformConfig":
        if (self.image_registry_username is None) != (self.image_registry_password_secret is None):
            raise ValueError("image_registry_username and image_registry_password_secret go together (both or neither)")
        return self


class StackConfig(StackModel):
    """Everything the ``testbed:`` namespace of one ``Pulumi.<region>.yaml`` holds."""

    region: RegionInfo
    cluster: ClusterConfig
    node_pools: list[NodePool] = Field(min_length=1)
    platform: PlatformConfig = Field(default_factory=PlatformConfig, validate_default=True)
    prices: list[Price] = Field(default_factory=list, description="price rows per pool, with dates; never rewritten")
    budget: Budget | None = None
    tenants: list[Tenant] = Field(min_length=1)

    @field_validator("platform")
    @classmethod
    def _image_registry(cls, platform: PlatformConfig, info: ValidationInfo) -> PlatformConfig:
        """Where the stack pushes the testbed image: its own ECR repository on eks, a named registry otherwise."""
        cluster = info.data.get("cluster")
        if cluster is None:
            return platform
        if cluster.provider == "existing" and not platform.image_registry:
            reason = (
                "is required for provider 'existing': the registry the stack pushes the testbed image to "
                "and the cluster's nodes pull it from, e.g. registry.example.org/testbed"
            )
        elif cluster.provider == "eks" and platform.image_registry:
            reason = "is only for provider 'existing': an eks stack pushes the testbed image to its own ECR repository"
        else:
            return platform
        raise ValidationError.from_exception_data(
            "PlatformConfig",
            [
                InitErrorDetails(
                    type=PydanticCustomError("image_registry", reason),
                    loc=("image_registry",),
                    input=platform.image_registry,
                )
            ],
        )

    @field_validator("node_pools")
    @classmethod
    def _unique_pools(cls, pools: list[NodePool]) -> list[NodePool]:
        _reject_duplicates("node pool", [p.name for p in pools])
        return pools

    @field_validator("prices")
    @classmethod
    def _price_rows(cls, prices: list[Price], info: ValidationInfo) -> list[Price]:
        pools = {p.name for p in info.data.get("node_pools") or []} | {LOCAL_POOL}
        _reject_duplicates("price row", [p.id for p in prices])
        for index, price in enumerate(prices):
            if price.pool not in pools:
                raise ValueError(f"[{index}].pool {price.pool!r} is not one of the node pools {sorted(pools)}")
        return prices

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, tenants: list[Tenant], info: ValidationInfo) -> list[Tenant]:
        _reject_duplicates("tenant id", [t.id for t in tenants])
        pools = {p.name for p in info.data.get("node_pools") or []}
        for index, tenant in enumerate(tenants):
            if pools and tenant.gpu_pool is not None and tenant.gpu_pool not in pools:
                raise ValueError(
                    f"[{index}].gpu_pool {tenant.gpu_pool!r} (tenant {tenant.id!r}) is not one of the node pools {sorted(pools)}"
                )
        return tenants

    def tenant(self, tenant_id: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.id == tenant_id:
                return tenant
        raise KeyError(tenant_id)

    def pool_for(self, tenant: Tenant) -> NodePool:
        """The GPU pool a tenant's GPU jobs land on (its own choice, else the first pool)."""
        name = tenant.gpu_pool or self.node_pools[0].name
        return next(p for p in self.node_pools if p.name == name)

    def price_for(self, pool: str, at: dt.datetime | float) -> Price:
        """The price row of ``pool`` in force at ``at`` (the newest row effective on or before its KST day)."""
        ts = at.timestamp() if isinstance(at, dt.datetime) else float(at)
        rows = [p for p in self.prices if p.pool == pool and p.effective_ts <= ts]
        if not rows:
            raise KeyError(f"no price for pool {pool!r} on {kst_date(ts)} (Asia/Seoul)")
        return max(rows, key=lambda p: p.effective_from)

    def price_rows(self, pool: str) -> list[Price]:
        """A pool's price rows, oldest first."""
        return sorted((p for p in self.prices if p.pool == pool), key=lambda p: p.effective_from)

    def overcommitment(self) -> dict[str, float]:
        """Ratio of summed tenant quota to the pools' maximum capacity, per resource.

        Above 1.0 means tenants together may ask for more than the pools can ever hold;
        Kueue then makes them wait or borrow within the region's cohort.
        """
        gpus = sum(p.max_gpus for p in self.node_pools)
        cpus = sum(p.max_cpus for p in self.node_pools)
        memory = sum(p.max_memory for p in self.node_pools)
        return {
            "gpus": sum(t.quota.gpus for t in self.tenants) / gpus,
            "cpus": sum(t.quota.cpus for t in self.tenants) / cpus,
            "memory": sum(t.quota.memory for t in self.tenants) / memory,
        }


def pricing_pool(stack: StackConfig, tenant: Tenant, backend: str) -> str:
    """The price pool of a tenant's jobs: ``local`` on the embedded testbed, its GPU pool in a cluster (kuberay)."""
    return stack.pool_for(tenant).name if backend == "kuberay" else LOCAL_POOL


def _reject_duplicates(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} {name!r}")
        seen.add(name)


# Stack-file keys (under ``testbed:``) and the model field each one feeds.
STACK_KEYS = {
    "region": "region",
    "cluster": "cluster",
    "nodePools": "node_pools",
    "platform": "platform",
    "prices": "prices",
    "budget": "budget",
    "tenants": "tenants",
}


def _key_path(loc: tuple[Any, ...]) -> str:
    """Turn a pydantic error location into the stack file's key path."""
    field_to_key = {v: k for k, v in STACK_KEYS.items()}
    parts: list[str] = ["config"]
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif i == 0:
            parts.append(f"{CONFIG_NAMESPACE}:{field_to_key.get(item, item)}")
        else:
            parts.append(str(item))
    return ".".join(parts)


def stack_config_from_mapping(config: dict[str, Any], file: str | Path = "<config>") -> StackConfig:
    """Validate a ``config:`` mapping (``testbed:<key>`` -> value) into a :class:`StackConfig`."""
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if namespace != CONFIG_NAMESPACE:
            continue  # other providers' keys, e.g. aws:region
        if name not in STACK_KEYS:
            problems.append((f"config.{key}", f"is not a known key; known: {sorted(STACK_KEYS)}"))
            continue
        values[STACK_KEYS[name]] = value
    if problems:
        raise ConfigError(file, problems)
    try:
        stack = StackConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(file, validation_problems(exc.errors(), _key_path)) from None
    problems = money_problems(stack)
    if problems:
        raise ConfigError(file, problems)
    return stack


def load_stack_file(path: str | Path) -> StackConfig:
    """Load and validate one ``Pulumi.<region>.yaml``; raise :class:`ConfigError` if wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, [("(file)", "no such file")]) from None
    except OSError as exc:
        raise ConfigError(path, [("(file)", f"cannot be read: {exc.strerror}")]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(path, [(where, f"is not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise ConfigError(path, [("config", "a stack file needs a 'config:' mapping")])
    stack = stack_config_from_mapping(document["config"], path)
    expected = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    if path.name.startswith("Pulumi.") and expected != stack.region.id:
        raise ConfigError(
            path, [("config.testbed:region.id", f"is {stack.region.id!r} but the file is for stack {expected!r}")]
        )
    return stack


def repo_root() -> Path:
    """The checkout holding the stack files (this package lives one level below it)."""
    return Path(__file__).resolve().parent.parent


def stack_file_for(region: str, stack_dir: str | Path | None = None) -> Path:
    """Path of the stack file for a region; ``$TESTBED_STACK_DIR`` overrides the checkout."""
    import os

    base = Path(stack_dir or os.environ.get("TESTBED_STACK_DIR") or repo_root())
    return base / f"Pulumi.{region}.yaml"


def load_region(region: str, stack_dir: str | Path | None = None) -> StackConfig:
    """Load the stack config of a region by its name."""
    if region not in REGIONS:
        raise ConfigError(f"Pulumi.{region}.yaml", [("(region)", f"unknown region {region!r}; one of {list(REGIONS)}")])
    return load_stack_file(stack_file_for(region, stack_dir))
