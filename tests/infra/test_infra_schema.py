"""Every Kubernetes object is valid for the stack's Kubernetes version; custom resources carry what their CRDs need.

kubernetes-validate ships schemas for 1.25-1.37; a stack's ``kubernetes_version`` maps to the newest
schema not newer than it (all five stacks run 1.33 and validate against 1.33.0 exactly).
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.infra.harness import is_builtin, schema_version

CRD_REQUIRED = {
    # kind: spec fields the testbed relies on (the full CRD check is tests/infra/test_crds.py).
    "ResourceFlavor": ["nodeLabels", "tolerations"],
    "ClusterQueue": ["resourceGroups", "namespaceSelector", "cohortName"],
    "LocalQueue": ["clusterQueue"],
    "Cohort": [],
    "PrometheusRule": ["groups"],
    "ServiceMonitor": ["selector", "endpoints"],
}


def test_schema_version_mapping():
    assert schema_version("1.33") == "1.33.0"
    assert schema_version("1.99") == "1.37.0"  # newer than any shipped schema: the newest one
    assert schema_version("1.10") == "1.25.0"  # older than any: the oldest one


def test_builtin_objects_are_schema_valid(runs, stacks):
    seen_kinds = set()
    for region, run in runs.items():
        version = schema_version(stacks[region].cluster.kubernetes_version)
        builtin = [r for r in run.resources if is_builtin(r)]
        assert builtin
        for resource in builtin:
            seen_kinds.add(resource.inputs["kind"])
            try:
                kubernetes_validate.validate(resource.inputs, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{region}: {resource.type} {resource.name}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert seen_kinds >= {
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "StatefulSet",
        "ServiceAccount",
        "Job",
    }


def test_custom_resources_carry_required_fields(runs):
    for region, run in runs.items():
        for resource in run.kubernetes_objects():
            if is_builtin(resource):
                continue
            kind = resource.inputs["kind"]
            assert kind in CRD_REQUIRED, f"{region}: unexpected custom resource {kind}"
            assert resource.inputs["apiVersion"] and resource.inputs["metadata"]["name"]
            spec = resource.inputs.get("spec") or {}
            for field in CRD_REQUIRED[kind]:
                assert spec.get(field) is not None, f"{region}: {kind} {resource.name} lacks spec.{field}"
            if kind == "ClusterQueue":
                for group in spec["resourceGroups"]:
                    covered = set(group["coveredResources"])
                    for flavor in group["flavors"]:
                        assert {r["name"] for r in flavor["resources"]} == covered
                        assert all("nominalQuota" in r for r in flavor["resources"])
