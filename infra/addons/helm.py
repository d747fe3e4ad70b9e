"""Helm releases pinned through the versions table."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.k8s import child, meta
from infra.naming import MANAGED_BY
from testbed.versions import CHARTS


def release(
    key: str,
    parent: pulumi.Resource,
    namespace: pulumi.Input[str],
    values: dict[str, Any],
    depends_on: list[pulumi.Resource] | None = None,
) -> k8s.helm.v3.Release:
    """Install chart ``key`` of the versions table as release ``key`` in ``namespace``."""
    chart = CHARTS[key]
    return k8s.helm.v3.Release(
        key,
        name=key,
        chart=chart.chart,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None,
        namespace=namespace,
        values=values,
        atomic=False,
        cleanup_on_fail=True,
        timeout=900,
        opts=child(parent, depends_on=depends_on),
    )


def namespace(name: str, parent: pulumi.Resource, privileged: bool = False) -> k8s.core.v1.Namespace:
    """A platform namespace (privileged ones are for node agents such as the GPU operator)."""
    level = "privileged" if privileged else "baseline"
    return k8s.core.v1.Namespace(
        f"ns-{name}",
        metadata=meta(name, labels={**MANAGED_BY, "pod-security.kubernetes.io/enforce": level}),
        opts=child(parent),
    )
