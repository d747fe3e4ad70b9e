"""Small helpers for Kubernetes objects: metadata, taints and quantities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from testbed.config import format_memory


@dataclass(frozen=True)
class Taint:
    """A node taint in kubectl syntax ``key=value:Effect``."""

    key: str
    value: str
    effect: str

    @classmethod
    def parse(cls, text: str) -> "Taint":
        key_value, _, effect = text.partition(":")
        key, _, value = key_value.partition("=")
        return cls(key, value, effect)

    def toleration(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}

    def eks(self) -> dict[str, str]:
        """The EKS API spelling (NoSchedule -> NO_SCHEDULE)."""
        effects = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}
        return {"key": self.key, "value": self.value, "effect": effects[self.effect]}


def meta(name: str, namespace: str | None = None, labels: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgs:
    return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=labels, annotations=annotations)


def memory(num_bytes: int) -> str:
    return format_memory(num_bytes)


def child(parent: pulumi.Resource, depends_on: list[pulumi.Resource] | None = None,
          **kwargs: Any) -> pulumi.ResourceOptions:
    """Options for a child resource (providers are inherited from the parent)."""
    return pulumi.ResourceOptions(parent=parent, depends_on=depends_on or [], **kwargs)


def custom_resource(name: str, parent: pulumi.Resource, api_version: str, kind: str,
                    metadata: k8s.meta.v1.ObjectMetaArgs, spec: dict[str, Any],
                    crds_from: list[pulumi.Resource]) -> k8s.apiextensions.CustomResource:
    """A custom resource that waits for the chart release installing its CRD."""
    return k8s.apiextensions.CustomResource(
        name, api_version=api_version, kind=kind, metadata=metadata, spec=spec,
        opts=child(parent, depends_on=crds_from),
    )
