"""Small helpers for Pulumi's Kubernetes objects: metadata, child options, quantities."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from testbed.quantities import format_memory


def meta(
    name: str,
    namespace: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> k8s.meta.v1.ObjectMetaArgs:
    return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=labels, annotations=annotations)


def memory(num_bytes: int) -> str:
    return format_memory(num_bytes)


def child(
    parent: pulumi.Resource, depends_on: list[pulumi.Resource] | None = None, **kwargs: Any
) -> pulumi.ResourceOptions:
    """Options for a child resource (providers are inherited from the parent)."""
    return pulumi.ResourceOptions(parent=parent, depends_on=depends_on or [], **kwargs)


def custom_resource(
    name: str,
    parent: pulumi.Resource,
    api_version: str,
    kind: str,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    spec: dict[str, Any],
    crds_from: list[pulumi.Resource],
) -> k8s.apiextensions.CustomResource:
    """A custom resource that waits for the chart release installing its CRD."""
    return k8s.apiextensions.CustomResource(
        name,
        api_version=api_version,
        kind=kind,
        metadata=metadata,
        spec=spec,
        opts=child(parent, depends_on=crds_from),
    )
