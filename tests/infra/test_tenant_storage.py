"""Each tenant's jobs reach its own storage prefix and nothing else: a ServiceAccount per tenant, on eks bound by
EKS Pod Identity to an IAM role whose policy names only ``tenants/<tenant>/``; the control plane reaches ``tenants/``;
the RayJobs of a tenant run as its ServiceAccount and still validate against the vendored CRD."""

from __future__ import annotations

import json

import yaml

from infra.naming import CONTROL_PLANE, PLATFORM_NS
from infra.tenants import POD_IDENTITY_AGENT
from testbed.placement import Placement, job_service_account, tenant_namespace
from tests.infra.crd_schema import upstream_catalog

EKS = ("gyeongnam", "daegu", "ulsan", "jeju")
ROLE, POLICY, BINDING = (
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:eks/podIdentityAssociation:PodIdentityAssociation",
)


def by_name(run, type_token: str) -> dict[str, dict]:
    return {r.name: {**r.inputs, **r.outputs} for r in run.of_type(type_token)}


def statements(policy: str) -> list[dict]:
    return json.loads(policy)["Statement"]


def test_each_tenants_role_reaches_its_own_prefix_only(runs, stacks):
    for region in EKS:
        run, stack = runs[region], stacks[region]
        roles, policies, bindings = by_name(run, ROLE), by_name(run, POLICY), by_name(run, BINDING)
        [bucket] = [r.outputs for r in run.of_type("aws:s3/bucket:Bucket")]
        bucket_arn = bucket["arn"]
        for tenant in stack.tenants:
            name = f"tenant-{tenant.id}-jobs"
            trust = json.loads(roles[name]["assumeRolePolicy"])["Statement"][0]
            assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
            objects, listing = statements(policies[name]["policy"])
            assert objects["Resource"] == [f"{bucket_arn}/tenants/{tenant.id}/*"]
            assert set(objects["Action"]) == {
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
            }
            assert listing["Action"] == ["s3:ListBucket"] and listing["Resource"] == [bucket_arn]
            assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"tenants/{tenant.id}/*"]}}
            text = policies[name]["policy"]
            others = [t.id for t in stack.tenants if t.id != tenant.id and f"/{t.id}/" in text]
            assert not others, f"{tenant.id}'s policy names {others}"
            assert '"s3:*"' not in text and f'"{bucket_arn}/*"' not in text and '"*"' not in text
            binding = bindings[name]
            assert (binding["namespace"], binding["serviceAccount"]) == (
                tenant_namespace(tenant),
                job_service_account(tenant),
            )
            assert binding["roleArn"] == roles[name]["arn"]
        # The control plane stores every tenant's uploads: all of tenants/, nothing else of the bucket.
        objects, listing = statements(policies[f"{region}-mlflow-storage-control-plane"]["policy"])
        assert objects["Resource"] == [f"{bucket_arn}/tenants/*"]
        assert listing["Condition"] == {"StringLike": {"s3:prefix": ["tenants/*"]}}
        assert (
            bindings[f"{region}-mlflow-storage-control-plane"]["namespace"],
            bindings[f"{region}-mlflow-storage-control-plane"]["serviceAccount"],
        ) == (PLATFORM_NS, CONTROL_PLANE)
        [agent] = [
            a.inputs for a in run.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == "eks-pod-identity-agent"
        ]
        settings = json.loads(
            run.objects("kubernetes:core/v1:Secret")[f"{PLATFORM_NS}/{CONTROL_PLANE}-settings"]["stringData"][
                "settings.json"
            ]
        )
        assert settings["storage_path"] == f"s3://{bucket['bucket']}/tenants"


def test_each_tenant_has_a_service_account_without_an_api_token(runs, stacks):
    for region, run in runs.items():
        accounts = run.objects("kubernetes:core/v1:ServiceAccount")
        policies = run.objects("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        for tenant in stacks[region].tenants:
            ns = tenant_namespace(tenant)
            account = accounts[f"{ns}/{job_service_account(tenant)}"]
            assert account["automountServiceAccountToken"] is False
            egress = policies[f"{ns}/allow-testbed"]["spec"]["egress"]
            to_agent = [
                rule
                for rule in egress
                for peer in rule.get("to", [])
                if peer.get("ipBlock", {}).get("cidr") == POD_IDENTITY_AGENT[0]
            ]
            # eks: the pods fetch their credentials from the node's Pod Identity Agent (link-local, else denied)
            assert bool(to_agent) == (region in EKS)


def test_a_tenants_rayjobs_run_as_its_service_account_and_validate(runs, stacks):
    from operators.control_plane.backends.base import CodePackage, LaunchRequest, Resources, RuntimeEnv
    from operators.control_plane.backends.kuberay import RayJobOptions, build_rayjob, resolve_targets

    catalog = upstream_catalog()
    for region in ("gyeongnam", "jeonnam"):
        run, stack = runs[region], stacks[region]
        config_map = run.objects("kubernetes:core/v1:ConfigMap")[f"{PLATFORM_NS}/{CONTROL_PLANE}-config"]
        targets = resolve_targets(Placement.model_validate(yaml.safe_load(config_map["data"]["placement.yaml"])), stack)
        accounts = run.objects("kubernetes:core/v1:ServiceAccount")
        for tenant in stack.tenants[:2]:
            sha = "c" * 64
            package = CodePackage(sha256=sha, location=f"s3://bucket/tenants/{tenant.id}/packages/{sha}.zip")
            request = LaunchRequest(
                job_id=f"job-{tenant.id}"[:30],
                tenant=tenant.id,
                region=region,
                entrypoint="python train.py",
                budget=Resources(cpus=1, gpus=0, memory=2**30),
                runtime_env=RuntimeEnv(env_vars={}, code_package=package),
            )
            manifest = build_rayjob(request, targets[tenant.id], RayJobOptions())
            catalog.validate(manifest)
            spec = manifest["spec"]
            pods = [
                spec["submitterPodTemplate"],
                spec["rayClusterSpec"]["headGroupSpec"]["template"],
                *[g["template"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]],
            ]
            namespace = manifest["metadata"]["namespace"]
            for pod in pods:
                account = pod["spec"]["serviceAccountName"]
                assert account == job_service_account(tenant) and f"{namespace}/{account}" in accounts
                assert pod["spec"]["automountServiceAccountToken"] is False
            assert yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"] == package.location
