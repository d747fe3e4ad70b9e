"""The policy pack passes the five stacks and rejects violating ones."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from infra.policy.policies import POLICIES
from tests.infra.harness import load_stack_document, policy_violations, run_region


def _policies(violations):
    return {policy for policy, _ in violations}


def _replace(run, type_token, edit):
    """A copy of the run's resources with ``edit`` applied to the inputs of every resource of a type."""
    resources = copy.deepcopy(run.resources)
    for r in resources:
        if r.type == type_token:
            edit(r)
    return resources


def test_pack_is_well_formed():
    pack = Path(__file__).resolve().parents[2] / "infra" / "policy"
    assert yaml.safe_load((pack / "PulumiPolicy.yaml").read_text())["runtime"]["name"] == "python"
    assert {p.name for p in POLICIES} == {
        "gpu-pools-tainted",
        "charts-pinned",
        "no-public-load-balancer",
        "tenant-namespaces-complete",
    }


def test_all_stacks_pass(runs):
    for region, run in runs.items():
        assert policy_violations(run.resources) == [], region


def test_untainted_eks_pool_is_rejected(runs):
    def untaint(r):
        if r.inputs.get("amiType") == "AL2023_x86_64_NVIDIA":
            r.inputs["taints"] = []

    violations = policy_violations(_replace(runs["gyeongnam"], "aws:eks/nodeGroup:NodeGroup", untaint))
    assert _policies(violations) == {"gpu_pools_tainted"} and len(violations) == 2


def test_untainted_existing_pool_is_rejected():
    document = load_stack_document("jeonnam")
    document["config"]["testbed:nodePools"][0]["taints"] = []
    violations = policy_violations(run_region("jeonnam", document).resources)
    assert violations == [("gpu_pools_tainted", violations[0][1])] and "a100-onprem" in violations[0][1]


def test_tenant_namespace_without_quota_is_rejected(runs):
    run = runs["daegu"]
    resources = [
        r
        for r in run.resources
        if not (
            r.type == "kubernetes:core/v1:ResourceQuota"
            and r.inputs["metadata"]["namespace"] == "tenant-buk-gu-medtech"
        )
    ]
    violations = policy_violations(resources)
    assert violations == [
        (
            "tenant_namespaces_complete",
            "tenant namespace tenant-buk-gu-medtech lacks a ResourceQuota (with requests.nvidia.com/gpu)",
        )
    ]


def test_tenant_namespace_without_queue_or_network_policy_is_rejected(runs):
    run = runs["ulsan"]
    resources = [r for r in run.resources if r.kind not in ("LocalQueue", "NetworkPolicy")]
    violations = policy_violations(resources)
    assert len(violations) == 4 and all("NetworkPolicy" in m and "LocalQueue" in m for _, m in violations)


def test_public_load_balancer_for_mlflow_is_rejected(runs):
    def expose(r):
        if r.inputs["metadata"]["name"] == "mlflow":
            r.inputs["spec"]["type"] = "LoadBalancer"

    violations = policy_violations(_replace(runs["jeju"], "kubernetes:core/v1:Service", expose))
    assert _policies(violations) == {"no_public_load_balancer"}


def test_internal_load_balancer_is_allowed(runs):
    def expose(r):
        if r.inputs["metadata"]["name"] == "testbed-control-plane":
            r.inputs["spec"]["type"] = "LoadBalancer"
            r.inputs["metadata"]["annotations"] = {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}

    assert policy_violations(_replace(runs["jeju"], "kubernetes:core/v1:Service", expose)) == []


def test_unpinned_chart_is_rejected(runs):
    for version in (None, "", "latest", "~1.4", ">=0.13"):

        def unpin(r, version=version):
            if r.inputs["name"] == "kueue":
                r.inputs["version"] = version

        violations = policy_violations(_replace(runs["gyeongnam"], "kubernetes:helm.sh/v3:Release", unpin))
        assert _policies(violations) == {"charts_pinned"}, version
