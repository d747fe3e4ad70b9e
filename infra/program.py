"""The region stack: cluster, platform, one environment per tenant, and the outputs."""

from __future__ import annotations

import pulumi

from infra import capacity
from infra import stack as stack_config
from infra.image import PlatformImage
from infra.providers import build_cluster
from infra.services import Platform
from infra.tenants import TenantEnvironment


def main() -> None:
    stack = stack_config.load()
    cluster = build_cluster(stack)
    # One image, built from this repository and pushed by the stack, runs the control plane, MLflow and the jobs.
    image = PlatformImage(f"{stack.region.id}-image", stack)
    k8s_only = {"kubernetes": cluster.provider}
    platform = Platform(
        "platform", stack, cluster, image.ref, opts=pulumi.ResourceOptions(providers=k8s_only, depends_on=cluster.ready)
    )
    tenants = [
        TenantEnvironment(
            f"tenant-{t.id}",
            stack,
            t,
            platform.kueue,
            platform.control_plane.service_account,
            platform.mlflow.storage,
            opts=pulumi.ResourceOptions(providers=k8s_only, depends_on=[platform.control_plane]),
        )
        for t in stack.tenants
    ]
    overcommitment = capacity.report(stack)
    capacity.warn(stack, overcommitment)
    capacity.warn_plan(stack)  # the pools cannot deliver the granted GPU-hours within the period

    pulumi.export("region", stack.region.id)
    pulumi.export("kubeconfig", pulumi.Output.secret(cluster.kubeconfig))
    pulumi.export("image", image.ref)
    pulumi.export("mlflow_url", platform.mlflow.url)
    pulumi.export("control_plane_url", platform.control_plane.url)
    # First login: `pulumi stack output operator_token --show-secrets` (the control plane holds only its hash).
    pulumi.export("operator_token", platform.control_plane.operator_token)
    # The program office's read-only token for this region (`testbed program report` reads it from a file).
    pulumi.export("program_office_token", platform.control_plane.program_office_token)
    pulumi.export("grafana_url", platform.monitoring.grafana_url)
    pulumi.export(
        "tenants",
        {
            t.id: {
                "namespace": env.namespace_name,
                "queue": env.local_queue_name,
                "cluster_queue": env.cluster_queue_name,
                "service_account": env.service_account_name,
            }
            for t, env in zip(stack.tenants, tenants)
        },
    )
    pulumi.export("overcommitment", overcommitment)
