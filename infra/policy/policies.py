"""The testbed's policies as plain validation functions (the tests call them directly)."""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.naming import PRIVATE_COMPONENTS
from testbed.kube import DEFAULT_GPU_TAINT, GPU_MODEL_LABEL, GPU_RESOURCE, POOL_LABEL, TENANT_LABEL, Taint

GPU_TAINT = Taint.parse(DEFAULT_GPU_TAINT)
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
INTERNAL_LB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    "networking.gke.io/load-balancer-type": "Internal",
}
REQUIRED_IN_TENANT_NS = {
    "ResourceQuota": "a ResourceQuota (with requests.nvidia.com/gpu)",
    "LimitRange": "a LimitRange",
    "NetworkPolicy": "a NetworkPolicy",
    "LocalQueue": "a Kueue LocalQueue",
}


def _metadata(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return props.get("metadata") or {}


def _kind(resource_type: str) -> str:
    return resource_type.rsplit(":", 1)[-1]


def gpu_pools_tainted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """GPU node groups carry the GPU taint; GPU flavors (pools of existing clusters) tolerate it."""
    props = args.props
    if args.resource_type == "aws:eks/nodeGroup:NodeGroup":
        is_gpu = "NVIDIA" in str(props.get("amiType", "")) or GPU_MODEL_LABEL in (props.get("labels") or {})
        taints = props.get("taints") or []
        if is_gpu and not any(t.get("key") == GPU_TAINT.key and t.get("effect") == "NO_SCHEDULE" for t in taints):
            report(
                f"GPU node group {args.name} has no {GPU_TAINT.key} NoSchedule taint; CPU pods would land on GPU nodes"
            )
    elif args.resource_type.startswith("kubernetes:kueue.x-k8s.io/") and _kind(args.resource_type) == "ResourceFlavor":
        spec = props.get("spec") or {}
        if POOL_LABEL in (_metadata(props).get("labels") or {}):  # the flavor of a GPU pool
            tolerations = spec.get("tolerations") or []
            if not any(t.get("key") == GPU_TAINT.key and t.get("effect") == "NoSchedule" for t in tolerations):
                report(
                    f"GPU pool {_metadata(props).get('name', args.name)} is not declared tainted "
                    f"({GPU_TAINT.key}:NoSchedule); taint its nodes and list the taint in the stack file"
                )


def charts_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every Helm chart names an exact version."""
    if args.resource_type not in ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"):
        return
    version = str(args.props.get("version") or "")
    if not EXACT_VERSION.match(version):
        report(
            f"chart {args.props.get('chart', args.name)} is not pinned to an exact version "
            f"(got {version or 'none'}); add it to testbed/versions.py"
        )


def no_public_load_balancer(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """MLflow, the control plane and their stores are never behind a public LoadBalancer."""
    if args.resource_type != "kubernetes:core/v1:Service":
        return
    meta = _metadata(args.props)
    spec = args.props.get("spec") or {}
    names = {meta.get("name"), (meta.get("labels") or {}).get("app.kubernetes.io/name")}
    if spec.get("type") != "LoadBalancer" or not names & set(PRIVATE_COMPONENTS):
        return
    annotations = meta.get("annotations") or {}
    if not any(annotations.get(k) == v for k, v in INTERNAL_LB_ANNOTATIONS.items()):
        report(f"service {meta.get('name', args.name)} is exposed by a public LoadBalancer; use ClusterIP")


def tenant_namespaces_complete(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every tenant namespace has a quota (with GPUs), a LimitRange, a NetworkPolicy and a LocalQueue."""
    tenant_namespaces = {}
    found: dict[str, set[str]] = {}
    for resource in args.resources:
        meta, kind = _metadata(resource.props), _kind(resource.resource_type)
        if kind == "Namespace" and TENANT_LABEL in (meta.get("labels") or {}):
            tenant_namespaces[meta.get("name")] = resource.urn
        elif kind in REQUIRED_IN_TENANT_NS:
            if kind == "ResourceQuota":
                hard = (resource.props.get("spec") or {}).get("hard") or {}
                if f"requests.{GPU_RESOURCE}" not in hard:
                    continue
            found.setdefault(meta.get("namespace"), set()).add(kind)
    for namespace, urn in sorted(tenant_namespaces.items()):
        missing = [what for kind, what in REQUIRED_IN_TENANT_NS.items() if kind not in found.get(namespace, set())]
        if missing:
            report(f"tenant namespace {namespace} lacks {', '.join(missing)}", urn)


def _resource_policy(name: str, description: str, fn: Callable) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(name=name, description=description, validate=fn)


POLICIES = [
    _resource_policy("gpu-pools-tainted", gpu_pools_tainted.__doc__, gpu_pools_tainted),
    _resource_policy("charts-pinned", charts_pinned.__doc__, charts_pinned),
    _resource_policy("no-public-load-balancer", no_public_load_balancer.__doc__, no_public_load_balancer),
    StackValidationPolicy(
        name="tenant-namespaces-complete",
        description=tenant_namespaces_complete.__doc__,
        validate=tenant_namespaces_complete,
    ),
]
RESOURCE_CHECKS = [gpu_pools_tainted, charts_pinned, no_public_load_balancer]
STACK_CHECKS = [tenant_namespaces_complete]
