"""Every custom resource the stacks create, and the RayJobs the control plane creates, against the official CRDs.

The CRDs are those of the pinned releases, vendored unmodified in tests/upstream/ (see SOURCES.md there);
tests/infra/crd_schema.py validates as an API server would (served, storage, not deprecated, schema, pruning).
"""

from __future__ import annotations

import json
import hashlib
import math
import re

import pulumi
import pytest
import yaml

from tests.infra.harness import is_builtin, load_stack_document, run_region
from testbed.config import stack_config_from_mapping
from testbed.quantities import format_memory
from testbed.placement import local_queue, tenant_namespace
from testbed.versions import CHARTS, KUEUE_API, MONITORING_API

from tests.infra.crd_schema import UPSTREAM, CrdCatalog, CrdValidationError, chart_folder, upstream_catalog

# Chart (testbed/versions.py) -> the "<repository> @ <tag>" SOURCES.md must name for it ({v}: version without "v").
SOURCE_TAGS = {
    "kueue": "kubernetes-sigs/kueue @ v{v}",
    "kuberay-operator": "ray-project/kuberay @ v{v}",
    "kube-prometheus-stack": "prometheus-community/helm-charts @ kube-prometheus-stack-{v}",
    "gpu-operator": "NVIDIA/gpu-operator @ v{v}",
    "cluster-autoscaler": "kubernetes/autoscaler @ cluster-autoscaler-chart-{v}",
}
SUBCHARTS = {"grafana-12.11.1", "kube-state-metrics-8.4.0"}  # kube-prometheus-stack 88.5.3's dependencies (values only)
NOT_CHARTS = {"dcgm-exporter-4.5.3-4.8.2"}  # vendored sources that are no chart (the idle-GPU metric's labels)
CUSTOM_KINDS = {"ClusterQueue", "LocalQueue", "Cohort", "ResourceFlavor", "ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def catalog() -> CrdCatalog:
    return upstream_catalog()


def custom_objects(run) -> list[dict]:
    return [r.inputs for r in run.kubernetes_objects() if not is_builtin(r)]


def of_kind(run, kind: str) -> dict[str, dict]:
    """Custom objects of a kind keyed by name (``namespace/name`` when namespaced)."""
    out = {}
    for obj in custom_objects(run):
        if obj["kind"] == kind:
            meta = obj["metadata"]
            out[f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]] = obj
    return out


# -- the vendored files are the pinned releases, unmodified ---------------------------------------
def _sources() -> str:
    return (UPSTREAM / "SOURCES.md").read_text(encoding="utf-8")


def test_vendored_releases_are_the_pinned_charts():
    """Bumping a chart in testbed/versions.py without vendoring that release's files fails here."""
    sources = _sources()
    expected = SUBCHARTS | NOT_CHARTS
    for key, chart in CHARTS.items():
        folder = chart_folder(key, chart.version)
        expected.add(folder.name)
        assert (folder / "values.yaml").is_file(), f"{key} {chart.version}: no tests/upstream/{folder.name}/values.yaml"
        tag = SOURCE_TAGS[key].format(v=chart.version.removeprefix("v"))
        assert tag in sources, f"{key} {chart.version}: tests/upstream/SOURCES.md names no '{tag}'"
    assert {p.name for p in UPSTREAM.iterdir() if p.is_dir()} == expected
    for key, kinds in {
        "kueue": ("ClusterQueue", "LocalQueue", "Cohort", "ResourceFlavor"),
        "kuberay-operator": ("RayJob",),
        "kube-prometheus-stack": ("ServiceMonitor", "PrometheusRule"),
    }.items():
        folder = chart_folder(key, CHARTS[key].version)
        assert {c.kind for c in CrdCatalog.load(folder).crds.values()} >= set(kinds), folder.name


def test_vendored_files_match_their_recorded_sha256():
    rows = re.findall(
        r"^\| `([^`]+)` \| `([^`]+)` \| `([0-9a-f]{40})` \| `([0-9a-f]{64})` \| (\d+) \|$", _sources(), re.MULTILINE
    )
    recorded = {file: (sha, int(size)) for file, _, _, sha, size in rows}
    vendored = {str(p.relative_to(UPSTREAM)) for p in UPSTREAM.rglob("*") if p.is_file() and p.parent != UPSTREAM}
    assert vendored == set(recorded), "every vendored file has one SOURCES.md row, and the reverse"
    for file, (sha, size) in recorded.items():
        data = (UPSTREAM / file).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (sha, size), f"{file} differs from upstream"
    notice = (UPSTREAM / "NOTICE").read_text(encoding="utf-8")
    assert "Apache License, Version 2.0" in notice
    assert all(
        name in notice
        for name in (
            "Kueue",
            "KubeRay",
            "prometheus-community",
            "grafana-community",
            "NVIDIA GPU Operator",
            "Kubernetes Autoscaler",
            "NVIDIA DCGM Exporter",
        )
    )


def test_api_versions_are_the_storage_versions(catalog):
    for kind in ("ClusterQueue", "LocalQueue", "Cohort", "ResourceFlavor", "Workload"):  # Workload: the backend reads
        crd = catalog.crd_for(KUEUE_API, kind)
        assert crd is not None and f"{crd.group}/{crd.storage_version}" == KUEUE_API, kind
    for kind in ("ServiceMonitor", "PrometheusRule"):
        crd = catalog.crd_for(MONITORING_API, kind)
        assert crd is not None and f"{crd.group}/{crd.storage_version}" == MONITORING_API, kind
    rayjob = catalog.crd_for("ray.io/v1", "RayJob")
    assert rayjob is not None and rayjob.storage_version == "v1"


# -- the validator itself ------------------------------------------------------------------------
FLAVOR = {
    "apiVersion": KUEUE_API,
    "kind": "ResourceFlavor",
    "metadata": {"name": "l4-pool"},
    "spec": {
        "nodeLabels": {"testbed.io/gpu-model": "l4"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
    },
}
QUEUE = {
    "apiVersion": KUEUE_API,
    "kind": "ClusterQueue",
    "metadata": {"name": "r-t"},
    "spec": {
        "cohortName": "r",
        "namespaceSelector": {},
        "resourceGroups": [
            {
                "coveredResources": ["cpu"],
                "flavors": [
                    {"name": "l4-pool", "resources": [{"name": "cpu", "nominalQuota": "8", "borrowingLimit": 4}]}
                ],
            }
        ],
    },
}


def _problems(catalog, obj, edit=None) -> list[str]:
    obj = yaml.safe_load(yaml.safe_dump(obj))
    if edit:
        edit(obj)
    return catalog.problems(obj)


def test_validator_accepts_valid_objects(catalog):
    assert _problems(catalog, FLAVOR) == []
    assert _problems(catalog, QUEUE) == []  # int-or-string quantities: "8" and 4


def test_validator_rejects_unknown_fields_naming_the_path(catalog):
    problems = _problems(catalog, FLAVOR, lambda o: o["spec"].update(nodeLabelz={"a": "b"}))
    assert problems == ["spec.nodeLabelz: unknown field, an API server would prune it"]
    problems = _problems(
        catalog, QUEUE, lambda o: o["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0].update(borrowLimit="1")
    )
    assert problems == [
        "spec.resourceGroups[0].flavors[0].resources[0].borrowLimit: unknown field, an API server would prune it"
    ]
    assert _problems(catalog, FLAVOR, lambda o: o.update(status2={})) == [
        "status2: unknown field, an API server would prune it"
    ]
    problems = _problems(catalog, FLAVOR, lambda o: o["metadata"].update(label={"a": "b"}))
    assert problems == ["metadata.label: unknown ObjectMeta field, an API server would prune it"]


def test_validator_rejects_wrong_types_and_values(catalog):
    problems = _problems(catalog, QUEUE, lambda o: o["spec"].update(queueingStrategy="Fifo", cohortName=3))
    assert any(p.startswith("spec.queueingStrategy: 'Fifo' is not one of") for p in problems)
    assert any(p.startswith("spec.cohortName: 3 is not of type 'string'") for p in problems)
    problems = _problems(
        catalog, QUEUE, lambda o: o["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0].update(nominalQuota=2.5)
    )
    assert problems and problems[0].startswith("spec.resourceGroups[0].flavors[0].resources[0].nominalQuota:")
    problems = _problems(
        catalog,
        QUEUE,
        lambda o: o["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0].update(nominalQuota="8 cores"),
    )
    assert problems and "does not match" in problems[0]
    assert _problems(catalog, FLAVOR, lambda o: o["metadata"].update(name="L4_pool")) == [
        "metadata.name: 'L4_pool' is not a DNS-1123 subdomain"
    ]


def test_validator_rejects_versions_that_are_not_storage_or_served(catalog):
    problems = _problems(catalog, FLAVOR, lambda o: o.update(apiVersion="kueue.x-k8s.io/v1beta1"))
    assert problems == [
        "apiVersion: kueue.x-k8s.io/v1beta1 is not the storage version (kueue.x-k8s.io/v1beta2)",
        "apiVersion: kueue.x-k8s.io/v1beta1 is deprecated: This version is deprecated. Use v1beta2 instead.",
    ]
    cohort = {"apiVersion": "kueue.x-k8s.io/v1alpha1", "kind": "Cohort", "metadata": {"name": "r"}, "spec": {}}
    assert _problems(catalog, cohort) == ["apiVersion: Cohort has no version v1alpha1 (defines ['v1beta1', 'v1beta2'])"]
    assert _problems(catalog, FLAVOR, lambda o: o.update(kind="Flavor"))[0].startswith(
        "kind: no CustomResourceDefinition for Flavor in group kueue.x-k8s.io"
    )


def test_validator_checks_scope(catalog):
    assert _problems(catalog, FLAVOR, lambda o: o["metadata"].update(namespace="x")) == [
        "metadata.namespace: must be empty for a cluster-scoped kind"
    ]
    queue = {"apiVersion": KUEUE_API, "kind": "LocalQueue", "metadata": {"name": "t"}, "spec": {"clusterQueue": "r-t"}}
    assert _problems(catalog, queue) == ["metadata.namespace: required for a namespaced kind"]


def _toy_crd(schema: dict, served: bool = True) -> CrdCatalog:
    return CrdCatalog.from_documents(
        [
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "spec": {
                    "group": "example.io",
                    "names": {"kind": "Toy"},
                    "scope": "Cluster",
                    "versions": [
                        {
                            "name": "v1",
                            "served": served,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "properties": {
                                        "apiVersion": {"type": "string"},
                                        "kind": {"type": "string"},
                                        "metadata": {"type": "object"},
                                        "spec": schema,
                                    },
                                }
                            },
                        }
                    ],
                },
            }
        ]
    )


def _toy(spec: dict) -> dict:
    return {"apiVersion": "example.io/v1", "kind": "Toy", "metadata": {"name": "t"}, "spec": spec}


def test_validator_handles_kubernetes_extensions():
    schema = {
        "type": "object",
        "properties": {
            "free": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"known": {"type": "integer"}},
            },
            "maybe": {"type": "string", "nullable": True},
            "never": {"type": "string"},
            "size": {"x-kubernetes-int-or-string": True},
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}},
            },
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}},
            },
        },
    }
    toys = _toy_crd(schema)
    good = {
        "free": {"known": 1, "anything": {"goes": True}},
        "maybe": None,
        "size": "10%",
        "template": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"x": "y"},
        },
        "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}],
    }
    assert toys.problems(_toy(good)) == []
    assert toys.problems(_toy({**good, "size": 3})) == []
    assert toys.problems(_toy({"free": {"known": "one"}}))[0].startswith("spec.free.known: 'one' is not of type")
    assert toys.problems(_toy({"never": None}))[0].startswith("spec.never: None is not of type")
    assert toys.problems(_toy({"size": 1.5}))[0].startswith("spec.size: 1.5 is not valid")
    assert toys.problems(_toy({"template": {"metadata": {"nam": "p"}}})) == [
        "spec.template.metadata.nam: unknown ObjectMeta field, an API server would prune it"
    ]
    assert toys.problems(_toy({"template": {"spec": {"y": 1}}})) == [
        "spec.template.spec.y: unknown field, an API server would prune it"
    ]
    assert toys.problems(_toy({"ports": [{"name": "a"}, {"name": "a"}]})) == [
        "spec.ports: duplicate entries for map keys {'name': 'a'}"
    ]
    assert _toy_crd(schema, served=False).problems(_toy({})) == ["apiVersion: example.io/v1 is not served"]
    with pytest.raises(CrdValidationError) as info:
        toys.validate(_toy({"nope": 1}))
    assert "example.io/v1 Toy t" in str(info.value) and "spec.nope: unknown field" in str(info.value)


# -- the stacks' custom resources -----------------------------------------------------------------
def test_every_custom_resource_of_every_stack_is_valid(runs, catalog):
    for region, run in runs.items():
        objects = custom_objects(run)
        assert {o["kind"] for o in objects} == CUSTOM_KINDS, region
        for obj in objects:
            try:
                catalog.validate(obj)
            except CrdValidationError as exc:
                pytest.fail(f"{region}: {exc}")


def _flavor_names(queue: dict) -> list[str]:
    return [f["name"] for group in queue["spec"]["resourceGroups"] for f in group["flavors"]]


# What each CEL rule on a field the stacks set means, as a check on that field's value (the validator does not
# run CEL). A new rule on a field the stacks set fails the test until its meaning is written down here.
CEL_CHECKS = {
    "borrowingLimit must be nil when cohort is empty": lambda spec: (
        bool(spec.get("cohortName"))
        or all(
            "borrowingLimit" not in r
            for g in spec.get("resourceGroups", [])
            for f in g["flavors"]
            for r in f["resources"]
        )
    ),
    "flavors must have the same number of resources as the coveredResources": lambda group: all(
        len(f["resources"]) == len(group["coveredResources"]) for f in group["flavors"]
    ),
    "reclaimWithinCohort=Never and borrowWithinCohort.Policy!=Never": lambda p: (
        not (
            p.get("reclaimWithinCohort") == "Never"
            and p.get("borrowWithinCohort", {}).get("policy", "Never") != "Never"
        )
    ),
    "preference can only be set when both whenCanBorrow and whenCanPreempt are TryNextFlavor": lambda f: (
        "preference" not in f or (f.get("whenCanBorrow") == f.get("whenCanPreempt") == "TryNextFlavor")
    ),
    "at least one nodeLabel is required when topology is set": lambda spec: (
        "topologyName" not in spec or len(spec.get("nodeLabels") or {}) >= 1
    ),
    "operator must be Exists when 'key' is empty, which means 'match all values and all keys'": lambda ts: all(
        t.get("key") or t.get("operator") == "Exists" for t in ts
    ),
    "effect must be 'NoExecute' when 'tolerationSeconds' is set": lambda ts: all(
        "tolerationSeconds" not in t or t.get("effect") == "NoExecute" for t in ts
    ),
    "supported toleration values: 'Equal'(default), 'Exists'": lambda ts: all(
        t.get("operator", "Equal") in ("Equal", "Exists") for t in ts
    ),
    "a value must be empty when 'operator' is 'Exists'": lambda ts: all(
        not (t.get("operator") == "Exists" and "value" in t) for t in ts
    ),
    "supported taint effect values: 'NoSchedule', 'PreferNoSchedule', 'NoExecute'": lambda ts: all(
        t.get("effect", "NoSchedule") in ("NoSchedule", "PreferNoSchedule", "NoExecute") for t in ts
    ),
    # ray.io/v1 RayJob (KubeRay 1.7.0)
    "legacy policies (onSuccess/onFailure) and deletionRules cannot be used together within the same "
    "deletionStrategy": lambda s: not (("onSuccess" in s or "onFailure" in s) and "deletionRules" in s),
    "deletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field (cannot be empty)": lambda s: (
        ("onSuccess" in s and "onFailure" in s) or "deletionRules" in s
    ),
    "JobStatus and JobDeploymentStatus cannot be used together within the same deletion condition.": lambda c: (
        not ("jobStatus" in c and "jobDeploymentStatus" in c)
    ),
    "the deletion condition requires either the JobStatus or the JobDeploymentStatus field.": lambda c: (
        "jobStatus" in c or "jobDeploymentStatus" in c
    ),
    "the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'": lambda v: (
        v in ("ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue")
    ),
}


def cel_violations(catalog, obj: dict) -> list[str]:
    """The CEL rules on ``obj``'s fields that fail, or that nobody has written a check for (creation only)."""
    out = []
    for rule in catalog.cel_rules(obj):
        if rule.transition:  # compares with oldSelf: checked on updates, e.g. immutable fields
            continue
        check = CEL_CHECKS.get(rule.message)
        if check is None:
            out.append(f"{obj['kind']} {rule.path}: unexamined CEL rule {rule.rule!r}")
        elif not check(rule.value):
            out.append(f"{obj['kind']} {rule.path}: {rule.message}")
    return out


def test_cel_rules_on_the_stacks_fields_hold(runs, catalog):
    seen = set()
    for region, run in runs.items():
        for obj in custom_objects(run):
            seen |= {r.message for r in catalog.cel_rules(obj)}
            assert cel_violations(catalog, obj) == [], region
    assert "borrowingLimit must be nil when cohort is empty" in seen
    queue = yaml.safe_load(yaml.safe_dump(QUEUE))
    del queue["spec"]["cohortName"]  # borrowing without a cohort: what the API server's CEL rule refuses
    assert cel_violations(catalog, queue) == ["ClusterQueue spec: borrowingLimit must be nil when cohort is empty"]


def test_kueue_references_resolve_within_each_stack(runs, stacks):
    for region, run in runs.items():
        flavors, cohorts = of_kind(run, "ResourceFlavor"), of_kind(run, "Cohort")
        cluster_queues, local_queues = of_kind(run, "ClusterQueue"), of_kind(run, "LocalQueue")
        for name, queue in cluster_queues.items():
            assert queue["spec"]["cohortName"] in cohorts, f"{region}: ClusterQueue {name}: no Cohort"
            for flavor in _flavor_names(queue):
                assert flavor in flavors, f"{region}: ClusterQueue {name}: no ResourceFlavor {flavor}"
        for name, queue in local_queues.items():
            assert queue["spec"]["clusterQueue"] in cluster_queues, f"{region}: LocalQueue {name}: no ClusterQueue"
        for cohort in cohorts.values():  # one flat cohort per region
            assert "parentName" not in cohort["spec"]
        for tenant in stacks[region].tenants:
            namespace = tenant_namespace(tenant)
            queue = local_queues.get(f"{namespace}/{local_queue(tenant)}")
            assert queue is not None, f"{region}: tenant {tenant.id} has no LocalQueue in {namespace}"
            cluster_queue = cluster_queues[queue["spec"]["clusterQueue"]]
            assert cluster_queue["spec"]["namespaceSelector"] == {
                "matchLabels": {"kubernetes.io/metadata.name": namespace}
            }
            assert _flavor_names(cluster_queue) == [stacks[region].pool_for(tenant).name]


def test_flavors_select_only_labels_the_pools_are_guaranteed_to_carry(runs, stacks):
    for region, run in runs.items():
        flavors = of_kind(run, "ResourceFlavor")
        groups = {g.inputs["nodeGroupName"]: g.inputs for g in run.of_type("aws:eks/nodeGroup:NodeGroup")}
        for pool in stacks[region].node_pools:
            selected = flavors[pool.name]["spec"]["nodeLabels"]
            assert selected
            if stacks[region].cluster.provider == "eks":  # the labels the stack puts on the node group
                assert selected.items() <= groups[f"{region}-{pool.name}"]["labels"].items(), pool.name
            else:  # only what the stack file declares the nodes carry
                assert selected == pool.node_labels, pool.name


def test_existing_pool_without_declared_labels_is_refused():
    document = load_stack_document("jeonnam")
    document["config"]["testbed:nodePools"][1]["node_labels"] = {}
    with pytest.raises(pulumi.RunError) as info:
        run_region("jeonnam", document)
    assert "Pulumi.jeonnam.yaml: config.testbed:nodePools[1].node_labels:" in str(info.value)
    assert "l4-onprem" in str(info.value)


def test_borrowing_ratio_maps_to_borrowing_limits():
    document = load_stack_document("jeju")
    document["config"]["testbed:platform"]["borrowing_ratio"] = 0.5
    stack = stack_config_from_mapping(document["config"])
    queues = of_kind(run_region("jeju", document), "ClusterQueue")
    for tenant in stack.tenants:
        pool = stack.pool_for(tenant)
        spec = queues[f"jeju-{tenant.id}"]["spec"]
        assert spec["cohortName"] == "jeju"
        [group] = spec["resourceGroups"]
        rows = {r["name"]: r for r in group["flavors"][0]["resources"]}
        assert not any("lendingLimit" in r for r in rows.values())  # idle quota is lent, reclaimed by preemption
        q = tenant.quota
        assert rows["nvidia.com/gpu"]["borrowingLimit"] == str(min(math.ceil(q.gpus * 0.5), pool.max_gpus - q.gpus))
        assert rows["cpu"]["borrowingLimit"] == str(min(math.ceil(q.cpus * 0.5), pool.max_cpus - q.cpus))
        memory = min(math.ceil(q.memory * 0.5 / 2**20) * 2**20, pool.max_memory - q.memory)
        assert rows["memory"]["borrowingLimit"] == format_memory(memory)
        assert spec["preemption"]["reclaimWithinCohort"] == "Any"
        assert spec["flavorFungibility"] == {"whenCanBorrow": "MayStopSearch", "whenCanPreempt": "TryNextFlavor"}
    document["config"]["testbed:platform"]["borrowing_ratio"] = 0
    queues = of_kind(run_region("jeju", document), "ClusterQueue")
    limits = {
        r["borrowingLimit"]
        for q in queues.values()
        for g in q["spec"]["resourceGroups"]
        for f in g["flavors"]
        for r in f["resources"]
    }
    assert limits == {"0"}


# -- the RayJobs of the kuberay backend --------------------------------------------------------------
REGION = "gyeongnam"


def _rayjob(kind: str) -> dict:
    """A RayJob as the kuberay backend's pure builder makes it, for a template, a command and a GPU job."""
    from infra.addons.control_plane import render_placement
    from operators.control_plane.backends.base import LaunchRequest
    from operators.control_plane.backends.kuberay import RayJobOptions, build_rayjob, resolve_targets
    from testbed import jobs as J
    from testbed.config import load_region
    from tests.stack_files import REAL_STACK_DIR
    from testbed.placement import Placement

    stack = load_region(REGION, REAL_STACK_DIR)
    targets = resolve_targets(Placement.model_validate(yaml.safe_load(render_placement(stack))), stack)
    target = next(iter(targets.values()))
    cpus, gpus, memory, driver_owns = {
        "template": (4, 0, 16 * 2**30, False),
        "command": (2.5, 0, 6 * 2**30, True),
        "gpu": (8, 2, 32 * 2**30, True),
    }[kind]
    job_id = f"job-{kind}-0123456789abcdef"
    entrypoint = "python -m workloads.train --epochs 1" if kind == "template" else "python train.py"
    working_dir = None if kind == "template" else f"s3://bucket/jobs/{target.tenant}/{job_id}/code.zip"
    env = {
        J.ENV_TENANT: target.tenant,
        J.ENV_JOB_ID: job_id,
        J.ENV_MLFLOW_TRACKING_URI: "http://mlflow.testbed-system.svc.cluster.local:5000",
    }
    budget = {"cpus": cpus, "gpus": gpus, "memory": memory}
    request = LaunchRequest(
        job_id=job_id,
        tenant=target.tenant,
        region=REGION,
        entrypoint=entrypoint,
        budget=budget,
        driver=budget if driver_owns else {"cpus": 0, "gpus": 0, "memory": 0},
        runtime_env={"env_vars": env, "working_dir": working_dir},
        secret_env={"MLFLOW_TRACKING_USERNAME": target.tenant, "MLFLOW_TRACKING_PASSWORD": LOGIN},
    )
    return build_rayjob(request, target, RayJobOptions())


LOGIN = "a-tenants-mlflow-password-0123456789"


@pytest.mark.parametrize("kind", ["template", "command", "gpu"])
def test_backend_rayjobs_are_valid(catalog, kind):
    manifest = _rayjob(kind)
    catalog.validate(manifest)
    assert cel_violations(catalog, manifest) == []
    # the job's MLflow login is not in the RayJob: every pod reads it from the job's Secret (secretKeyRef)
    assert LOGIN not in json.dumps(manifest)
    spec = manifest["spec"]
    for template in [
        spec["submitterPodTemplate"],
        spec["rayClusterSpec"]["headGroupSpec"]["template"],
        *(g["template"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]),
    ]:
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for c in template["spec"]["containers"] for e in c["env"]}
        assert refs["MLFLOW_TRACKING_PASSWORD"] == {
            "name": f"{manifest['metadata']['name']}-login",
            "key": "MLFLOW_TRACKING_PASSWORD",
        }
    # What Kueue 0.19.2's RayJob webhook requires of a queued RayJob (pkg/controller/jobs/rayjob/rayjob_webhook.go,
    # pkg/controller/jobs/raycluster/common.go): its own cluster, deleted when the job ends, no autoscaling.
    spec = manifest["spec"]
    assert manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] and spec["suspend"] is True
    assert not spec.get("clusterSelector") and spec["rayClusterSpec"] and spec["shutdownAfterJobFinishes"] is True
    assert not spec["rayClusterSpec"].get("enableInTreeAutoscaling")
    assert all(g["groupName"] != "head" for g in spec["rayClusterSpec"]["workerGroupSpecs"])
    # Kueue counts every pod set (head, workers, the submitter of K8sJobMode): each asks for what it gets, none
    # names a node (the admitting ResourceFlavor adds its nodeLabels and tolerations).
    from operators.control_plane.backends.kuberay import kueue_pod_sets

    pod_sets = kueue_pod_sets(manifest)
    assert [p.name for p in pod_sets] == ["head", "workers", "submitter"]
    for pod_set in pod_sets:
        pod = pod_set.template["spec"]
        assert all(c["resources"]["requests"] == c["resources"]["limits"] for c in pod["containers"])
        assert not {"nodeSelector", "affinity", "tolerations"} & set(pod)
