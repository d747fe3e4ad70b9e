"""The five region stacks build the cluster, the platform and the outputs they promise."""

from __future__ import annotations

import json

import yaml

from infra.addons.monitoring import read_rules
from infra.naming import CONTROL_PLANE, MLFLOW, PLATFORM_NS
from testbed.placement import tenant_namespace
from testbed.kube import GPU_MODEL_LABEL
from testbed.versions import CHARTS, EKS_AMI_TYPES, KUEUE_API
from testbed.config import stack_config_from_mapping

EKS = ("gyeongnam", "daegu", "ulsan", "jeju")
FLAVOR, COHORT = f"kubernetes:{KUEUE_API}:ResourceFlavor", f"kubernetes:{KUEUE_API}:Cohort"


def test_every_stack_evaluates(runs, stacks):
    for region, run in runs.items():
        assert run.outputs["region"] == region
        assert len(run.of_type("testbed:tenant:Environment")) == len(stacks[region].tenants)


def test_outputs(runs, stacks):
    for region, run in runs.items():
        out = run.outputs
        assert "kubeconfig" in run.secret_outputs and out["kubeconfig"]
        assert out["mlflow_url"] == f"http://{MLFLOW}.{PLATFORM_NS}.svc.cluster.local:5000"
        assert out["control_plane_url"] == f"http://{CONTROL_PLANE}.{PLATFORM_NS}.svc.cluster.local:8000"
        assert out["grafana_url"] == "http://kube-prometheus-stack-grafana.monitoring.svc.cluster.local:80"
        for tenant in stacks[region].tenants:
            assert out["tenants"][tenant.id] == {
                "namespace": tenant_namespace(tenant),
                "queue": tenant.id,
                "cluster_queue": f"{region}-{tenant.id}",
                "service_account": f"{tenant.id}-jobs",
            }
        assert set(out["overcommitment"]) >= {"gpus", "cpus", "memory", "pools", "overcommitted"}
        # Generated passwords never show up in plain outputs.
        plain = json.dumps({k: v for k, v in out.items() if k not in run.secret_outputs})
        assert "mock-password" not in plain


def test_eks_cluster_and_gpu_node_groups(runs, stacks):
    for region in EKS:
        run, stack = runs[region], stacks[region]
        [cluster] = run.of_type("aws:eks/cluster:Cluster")
        assert cluster.inputs["version"] == stack.cluster.kubernetes_version
        assert len(run.of_type("aws:ec2/subnet:Subnet")) == 2 * stack.cluster.availability_zones
        groups = {g.inputs["nodeGroupName"]: g.inputs for g in run.of_type("aws:eks/nodeGroup:NodeGroup")}
        system = groups[f"{region}-system"]
        assert system["amiType"] == EKS_AMI_TYPES["cpu"] and not system.get("taints")
        for pool in stack.node_pools:
            group = groups[f"{region}-{pool.name}"]
            assert group["amiType"] == "AL2023_x86_64_NVIDIA"
            assert group["labels"][GPU_MODEL_LABEL] == pool.gpu_model
            assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"} in group["taints"]
            assert group["scalingConfig"] == {
                "minSize": pool.min_size,
                "maxSize": pool.max_size,
                "desiredSize": pool.min_size,
            }
            assert group["capacityType"] == {"on-demand": "ON_DEMAND", "spot": "SPOT"}[pool.capacity_type]
            assert group["instanceTypes"] == pool.instance_types
        kubeconfig = json.loads(run.outputs["kubeconfig"])
        assert kubeconfig["users"][0]["user"]["exec"]["args"][:2] == ["eks", "get-token"]
        [db] = run.of_type("aws:rds/instance:Instance")
        assert db.inputs["publiclyAccessible"] is False and db.inputs["storageEncrypted"] is True
        [block] = run.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        assert all(block.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy", "restrictPublicBuckets"))
        jobs = {f"{t.id}-jobs" for t in stack.tenants}  # each tenant's Ray pods (tests/infra/test_tenant_storage.py)
        assert {
            r.inputs["serviceAccount"] for r in run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        } == {MLFLOW, "cluster-autoscaler", CONTROL_PLANE, *jobs}
        assert not run.of_type("kubernetes:apps/v1:StatefulSet")  # managed database and bucket instead


def test_existing_cluster_uses_secret_kubeconfig_and_in_cluster_storage(runs):
    run = runs["jeonnam"]
    assert not [r for r in run.resources if r.type.startswith("aws:")]
    [provider] = run.of_type("pulumi:providers:kubernetes")
    assert yaml.safe_load(provider.inputs["kubeconfig"])["current-context"] == "mock"
    assert set(run.objects("kubernetes:apps/v1:StatefulSet")) == {f"{PLATFORM_NS}/postgres", f"{PLATFORM_NS}/minio"}
    assert all(
        r.provider.split("::")[-2] == "jeonnam-k8s"
        for r in run.resources
        if r.custom and r.type.startswith("kubernetes:")
    )


def test_charts_come_from_the_versions_table(runs):
    for run in runs.values():
        releases = {r.inputs["name"]: r.inputs for r in run.of_type("kubernetes:helm.sh/v3:Release")}
        for name, release in releases.items():
            chart = CHARTS[name]
            assert (release["chart"], release["version"]) == (chart.chart, chart.version)
            if chart.repo:
                assert release["repositoryOpts"]["repo"] == chart.repo
        assert {"gpu-operator", "kuberay-operator", "kueue", "kube-prometheus-stack"} <= set(releases)
        dcgm = releases["gpu-operator"]["values"]["dcgmExporter"]
        assert dcgm["enabled"] and dcgm["serviceMonitor"]["enabled"]


def test_kueue_flavors_and_cohort(runs, stacks):
    for region, run in runs.items():
        flavors = run.objects(FLAVOR)
        assert set(flavors) == {p.name for p in stacks[region].node_pools}
        for pool in stacks[region].node_pools:
            spec = flavors[pool.name]["spec"]
            assert spec["nodeLabels"][GPU_MODEL_LABEL] == pool.gpu_model
            assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in spec[
                "tolerations"
            ]
        assert set(run.objects(COHORT)) == {region}


def test_monitoring_rules_dashboard_and_service_monitor(runs):
    for run in runs.values():
        [rule] = run.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
        assert rule.inputs["spec"] == read_rules()
        [dashboard] = [
            r.inputs
            for r in run.of_type("kubernetes:core/v1:ConfigMap")
            if (r.inputs["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"
        ]
        assert json.loads(dashboard["data"]["testbed.json"])["uid"]
        [monitor] = run.of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor")
        assert monitor.inputs["spec"]["endpoints"][0]["path"] == "/metrics"
        # CRD-dependent objects wait for the chart installing their CRDs.
        releases = {r.inputs["name"] for r in run.of_type("kubernetes:helm.sh/v3:Release")}
        assert "kube-prometheus-stack" in releases


def test_control_plane_reads_the_same_model(runs, stacks):
    for region, run in runs.items():
        config_map = run.objects("kubernetes:core/v1:ConfigMap")[f"{PLATFORM_NS}/{CONTROL_PLANE}-config"]
        document = yaml.safe_load(config_map["data"][f"Pulumi.{region}.yaml"])
        assert stack_config_from_mapping(document["config"]) == stacks[region]
        placement = yaml.safe_load(config_map["data"]["placement.yaml"])
        assert set(placement["tenants"]) == {t.id for t in stacks[region].tenants}
        deployment = run.objects("kubernetes:apps/v1:Deployment")[f"{PLATFORM_NS}/{CONTROL_PLANE}"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == run.outputs["image"]  # the image the stack built, by digest
        assert deployment["spec"]["replicas"] == stacks[region].platform.control_plane_replicas
        assert pod["serviceAccountName"] == CONTROL_PLANE
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        # Settings hold the database password: a Secret mounted next to the ConfigMap.
        secret = run.objects("kubernetes:core/v1:Secret")[f"{PLATFORM_NS}/{CONTROL_PLANE}-settings"]
        settings = json.loads(secret["stringData"]["settings.json"])
        assert env["TESTBED_CONTROL_PLANE_SETTINGS"].endswith("/settings.json")
        assert settings["stack_file"] == f"/etc/testbed/Pulumi.{region}.yaml"
        assert settings["database_url"].startswith("postgresql+psycopg2://testbed:mock-password-")
        assert settings["database_url"].split("?")[0].endswith("/testbed")
        assert settings["mlflow_tracking_uri"] == run.outputs["mlflow_url"]
        assert settings["storage_path"].startswith("s3://")
        assert "mock-password" not in json.dumps(config_map)
        try:  # the control plane's own settings model, when that package is present
            from testbed.settings import ControlPlaneSettings
        except ImportError:
            continue
        assert set(settings) <= set(ControlPlaneSettings.model_fields)


def test_private_services_are_cluster_ip(runs):
    for run in runs.values():
        services = run.objects("kubernetes:core/v1:Service")
        for name in (MLFLOW, CONTROL_PLANE):
            assert services[f"{PLATFORM_NS}/{name}"]["spec"]["type"] == "ClusterIP"
        mlflow = run.objects("kubernetes:apps/v1:Deployment")[f"{PLATFORM_NS}/{MLFLOW}"]
        container = mlflow["spec"]["template"]["spec"]["containers"][0]
        assert "--serve-artifacts" in container["args"]
        assert container["image"] == run.outputs["image"]


def test_existing_pools_select_only_declared_labels(runs, stacks):
    flavors = runs["jeonnam"].objects(FLAVOR)
    for pool in stacks["jeonnam"].node_pools:
        assert flavors[pool.name]["spec"]["nodeLabels"] == pool.node_labels
