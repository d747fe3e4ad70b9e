"""Where each tenant's jobs go in a cluster: namespace, LocalQueue, ClusterQueue, GPU pool, ServiceAccount.

Pulumi builds the tenants' namespaces and queues from these names and renders the same model into
the control plane's ConfigMap (``placement.yaml``); the kuberay backend reads it back.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from testbed.config import StackConfig, Tenant


class PlacementError(ValueError):
    """The placement file is missing, malformed or does not match the stack."""


def tenant_namespace(tenant: Tenant) -> str:
    return f"tenant-{tenant.id}"


def local_queue(tenant: Tenant) -> str:
    """The LocalQueue in the tenant's namespace; RayJobs carry it as ``kueue.x-k8s.io/queue-name``."""
    return tenant.id


def cluster_queue(stack: StackConfig, tenant: Tenant) -> str:
    return f"{stack.region.id}-{tenant.id}"


def job_service_account(tenant: Tenant) -> str:
    """The ServiceAccount of the tenant's Ray pods in its namespace: the identity that reaches its storage prefix."""
    return f"{tenant.id}-jobs"


class TenantPlacement(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")

    namespace: str
    local_queue: str = Field(alias="localQueue")
    cluster_queue: str = Field(alias="clusterQueue")
    gpu_pool: str = Field(alias="gpuPool")
    service_account: str = Field(alias="serviceAccount")


class Placement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str
    tenants: dict[str, TenantPlacement]

    @classmethod
    def for_stack(cls, stack: StackConfig) -> "Placement":
        """The placement of every tenant of a stack (what Pulumi creates)."""
        return cls(
            region=stack.region.id,
            tenants={
                t.id: TenantPlacement(
                    namespace=tenant_namespace(t),
                    local_queue=local_queue(t),
                    cluster_queue=cluster_queue(stack, t),
                    gpu_pool=stack.pool_for(t).name,
                    service_account=job_service_account(t),
                )
                for t in stack.tenants
            },
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "Placement":
        try:
            return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise PlacementError(f"{path}: cannot read placement file: {exc.strerror or exc}") from None
        except (yaml.YAMLError, ValidationError) as exc:
            raise PlacementError(f"{path}: not a valid placement file: {exc}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", by_alias=True), sort_keys=False)
