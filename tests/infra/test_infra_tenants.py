"""One environment per tenant: namespace, quota, limits, isolation, RBAC, queues; over-commitment reported."""

from __future__ import annotations

from infra.naming import CONTROL_PLANE, PLATFORM_NS
from testbed.placement import tenant_namespace
from testbed.kube import TENANT_LABEL
from infra.tenants import Allocation
from tests.infra.harness import generated_tenants_document, run_region
from testbed.config import stack_config_from_mapping
from testbed.quantities import format_memory
from testbed.versions import KUEUE_API


# Exactly what the kuberay backend needs in a tenant namespace: manage RayJobs, read their Ray clusters, read
# job logs (find the submitter/head pod, read its log), write each job's login Secret and read Kueue's Workloads (why a job waits); nothing more.
CONTROL_PLANE_RULES = [
    (("ray.io",), ("rayjobs",), ("get", "list", "watch", "create", "update", "patch", "delete")),
    (("ray.io",), ("rayjobs/status",), ("get",)),
    (("ray.io",), ("rayclusters",), ("get", "list", "watch")),
    (("",), ("pods",), ("get", "list")),
    (("",), ("pods/log",), ("get",)),
    (("",), ("secrets",), ("create", "update")),  # each job's MLflow login; it cannot read any Secret back
    (("kueue.x-k8s.io",), ("workloads",), ("get", "list")),
]


def _rules(role: dict) -> list[tuple[tuple[str, ...], ...]]:
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames, nonResourceURLs
    return [(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in role["rules"]]


def test_tenant_environments(runs, stacks):
    for region, run in runs.items():
        stack = stacks[region]
        namespaces = run.objects("kubernetes:core/v1:Namespace")
        quotas = run.objects("kubernetes:core/v1:ResourceQuota")
        limits = run.objects("kubernetes:core/v1:LimitRange")
        policies = run.objects("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        roles = run.objects("kubernetes:rbac.authorization.k8s.io/v1:Role")
        bindings = run.objects("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
        cluster_queues = run.objects(f"kubernetes:{KUEUE_API}:ClusterQueue")
        local_queues = run.objects(f"kubernetes:{KUEUE_API}:LocalQueue")
        for tenant in stack.tenants:
            ns = tenant_namespace(tenant)
            pool = stack.pool_for(tenant)
            alloc = Allocation.of(tenant, pool, stack.platform.borrowing_ratio)
            assert namespaces[ns]["metadata"]["labels"][TENANT_LABEL] == tenant.id

            hard = quotas[f"{ns}/tenant-quota"]["spec"]["hard"]
            assert hard["requests.nvidia.com/gpu"] == str(tenant.quota.gpus + alloc.borrow_gpus)
            assert hard["requests.cpu"] == str(tenant.quota.cpus + alloc.borrow_cpus)
            assert hard["services.loadbalancers"] == "0"

            [item] = limits[f"{ns}/tenant-defaults"]["spec"]["limits"]
            assert item["default"] and item["defaultRequest"]  # pods without requests are admitted

            deny = policies[f"{ns}/default-deny"]["spec"]
            assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
            allow = policies[f"{ns}/allow-testbed"]["spec"]
            egress_ports = {p["port"] for rule in allow["egress"] for p in rule.get("ports", [])}
            assert {53, 5000, 8000} <= egress_ports  # DNS, MLflow, control plane

            role = roles[f"{ns}/testbed-rayjobs"]
            assert sorted(_rules(role)) == sorted(
                (groups, resources, tuple(sorted(verbs))) for groups, resources, verbs in CONTROL_PLANE_RULES
            )
            [subject] = bindings[f"{ns}/testbed-control-plane-rayjobs"]["subjects"]
            assert subject == {"kind": "ServiceAccount", "name": CONTROL_PLANE, "namespace": PLATFORM_NS}

            cq = cluster_queues[f"{region}-{tenant.id}"]["spec"]
            assert cq["cohortName"] == region
            [group] = cq["resourceGroups"]
            [flavor] = group["flavors"]
            assert flavor["name"] == pool.name
            quota = {r["name"]: r["nominalQuota"] for r in flavor["resources"]}
            assert quota == {
                "cpu": str(tenant.quota.cpus),
                "memory": format_memory(tenant.quota.memory),
                "nvidia.com/gpu": str(tenant.quota.gpus),
            }
            assert cq["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": ns}
            assert local_queues[f"{ns}/{tenant.id}"]["spec"] == {"clusterQueue": f"{region}-{tenant.id}"}


def test_borrowing_is_capped_by_the_pool(stacks):
    stack = stacks["daegu"]
    tenant = stack.tenant("buk-gu-medtech")  # 4 GPUs on a pool of 8
    alloc = Allocation.of(tenant, stack.pool_for(tenant), ratio=5.0)
    assert alloc.gpus + alloc.borrow_gpus == stack.pool_for(tenant).max_gpus


def test_overcommitment_is_reported():
    document = generated_tenants_document("jeju", 12)  # 12 GPUs of quota on an 8-GPU pool
    run = run_region("jeju", document)
    over = run.outputs["overcommitment"]
    assert over["gpus"] == 1.5 and "l4-pool.gpus" in over["overcommitted"]
    assert any("1.50x" in w and "l4-pool" in w for w in run.warnings)
    stack = stack_config_from_mapping(document["config"])
    assert over["gpus"] == stack.overcommitment()["gpus"]


def test_no_warning_when_capacity_suffices(runs):
    for run in runs.values():
        assert run.outputs["overcommitment"]["overcommitted"] == []
        assert run.warnings == []
