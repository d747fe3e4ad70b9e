"""The sample stack for several companies on one GPU server (k3s, ``provider: existing``) evaluates under the Pulumi
mocks and gives each company what the cluster mode isolates by: a namespace, a quota, a queue, a deny-by-default
network policy, a job identity without an API token, and no cloud resource."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.infra.harness import run_region
from testbed.config import stack_config_from_mapping
from testbed.versions import KUEUE_API

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "operators" / "k3s-one-server.stack.yaml"


def test_the_one_server_sample_isolates_each_company():
    document = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    stack = stack_config_from_mapping(document["config"])
    assert stack.cluster.provider == "existing" and [p.name for p in stack.node_pools] == ["server-1"]
    run = run_region(stack.region.id, document)
    assert not [r for r in run.resources if r.type.startswith("aws:")]
    namespaces = run.objects("kubernetes:core/v1:Namespace")
    quotas = run.objects("kubernetes:core/v1:ResourceQuota")
    policies = run.objects("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    queues = run.objects(f"kubernetes:{KUEUE_API}:LocalQueue")
    accounts = run.objects("kubernetes:core/v1:ServiceAccount")
    assert len(stack.tenants) == 3
    for tenant in stack.tenants:
        ns = f"tenant-{tenant.id}"
        assert ns in namespaces and f"{ns}/tenant-quota" in quotas
        assert quotas[f"{ns}/tenant-quota"]["spec"]["hard"]["requests.nvidia.com/gpu"]
        assert policies[f"{ns}/default-deny"]["spec"]["podSelector"] == {}
        assert [q for q in queues if q.startswith(f"{ns}/")]
        jobs = [a for key, a in accounts.items() if key.startswith(f"{ns}/")]
        assert jobs and all(a.get("automountServiceAccountToken") is False for a in jobs)
