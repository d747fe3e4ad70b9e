"""A private web service: ServiceAccount, Deployment and a ClusterIP Service of one name."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra.k8s import child, meta
from infra.naming import labels


@dataclass
class WebService:
    """What to run; the Service is always ClusterIP (never exposed outside the cluster)."""

    component: str
    image: pulumi.Input[str]  # the testbed image by digest (infra/image.py); it runs as a numeric non-root user
    port: int
    replicas: int = 1
    args: list[str] | None = None
    env: list[k8s.core.v1.EnvVarArgs] = field(default_factory=list)
    volumes: list[k8s.core.v1.VolumeArgs] = field(default_factory=list)
    mounts: list[k8s.core.v1.VolumeMountArgs] = field(default_factory=list)
    pod_annotations: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "250m", "memory": "512Mi"})
    memory_limit: str = "2Gi"
    api_access: bool = False  # mount the ServiceAccount token (for Kubernetes API clients)


def deploy(
    name: str,
    parent: pulumi.Resource,
    ns: pulumi.Input[str],
    spec: WebService,
    depends_on: list[pulumi.Resource] | None = None,
    account_annotations: dict[str, str] | None = None,
) -> tuple[k8s.core.v1.ServiceAccount, k8s.apps.v1.Deployment, k8s.core.v1.Service]:
    """Create the three objects in namespace ``ns``."""
    selector = {"app.kubernetes.io/name": spec.component}
    account = k8s.core.v1.ServiceAccount(
        f"{name}-sa",
        metadata=meta(spec.component, ns, labels(spec.component), account_annotations),
        automount_service_account_token=spec.api_access,
        opts=child(parent),
    )
    probe = k8s.core.v1.ProbeArgs(
        tcp_socket=k8s.core.v1.TCPSocketActionArgs(port="http"), period_seconds=10, failure_threshold=6
    )
    container = k8s.core.v1.ContainerArgs(
        name=spec.component,
        image=spec.image,
        args=spec.args,
        env=spec.env,
        volume_mounts=spec.mounts or None,
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=spec.port)],
        readiness_probe=probe,
        liveness_probe=probe,
        resources=k8s.core.v1.ResourceRequirementsArgs(requests=spec.requests, limits={"memory": spec.memory_limit}),
        security_context=k8s.core.v1.SecurityContextArgs(
            allow_privilege_escalation=False,
            run_as_non_root=True,
            capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        ),
    )
    deployment = k8s.apps.v1.Deployment(
        name,
        metadata=meta(spec.component, ns, labels(spec.component)),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=spec.replicas,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    labels=labels(spec.component), annotations=spec.pod_annotations or None
                ),
                spec=k8s.core.v1.PodSpecArgs(
                    service_account_name=spec.component, containers=[container], volumes=spec.volumes or None
                ),
            ),
        ),
        opts=child(parent, depends_on=[account, *(depends_on or [])]),
    )
    service = k8s.core.v1.Service(
        f"{name}-svc",
        metadata=meta(spec.component, ns, labels(spec.component)),
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ClusterIP",
            selector=selector,
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=spec.port, target_port="http")],
        ),
        opts=child(parent),
    )
    return account, deployment, service
