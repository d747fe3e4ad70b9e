"""Every chart and image version the testbed deploys, in one table (nothing else pins them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chart:
    """A Helm chart pinned to an exact version (``repo`` is an HTTP repo, or empty for ``oci://`` charts)."""

    chart: str
    version: str
    repo: str = ""


@dataclass(frozen=True)
class Image:
    """A container image pinned to an exact tag."""

    repository: str
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


CHARTS: dict[str, Chart] = {
    # Chart versions as the releases publish them (tests/upstream/SOURCES.md names each tag and file):
    # gpu-operator's release workflow packages the chart as the tag (v26.7.0); Kueue's strips the tag's "v".
    "gpu-operator": Chart("gpu-operator", "v26.7.0", "https://helm.ngc.nvidia.com/nvidia"),
    "kuberay-operator": Chart("kuberay-operator", "1.7.0", "https://ray-project.github.io/kuberay-helm/"),
    "kueue": Chart("oci://registry.k8s.io/kueue/charts/kueue", "0.19.2"),
    "cluster-autoscaler": Chart("cluster-autoscaler", "9.59.0", "https://kubernetes.github.io/autoscaler"),
    "kube-prometheus-stack": Chart(
        "kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts"
    ),
}

IMAGES: dict[str, Image] = {
    # Base of the testbed image (the repository's Dockerfile); the stack passes it as the PYTHON_IMAGE build arg.
    # The testbed image itself (control plane, MLflow, the jobs' RayJob pods) is built and pushed by each stack and
    # deployed by digest (infra/image.py), so it has no entry here.
    "python": Image("docker.io/library/python", "3.11.14-slim-bookworm"),
    "postgres": Image("docker.io/library/postgres", "16.10-bookworm"),
    "minio": Image("quay.io/minio/minio", "RELEASE.2025-07-23T15-54-02Z"),
    "minio-client": Image("quay.io/minio/mc", "RELEASE.2025-07-21T05-28-08Z"),
    # Ray of the jobs' RayJob pods: the same release as the `ray` pinned in pyproject.toml (the control plane's
    # ControlPlaneSettings.ray_image default names this exact image). Template jobs run this repository's
    # `workloads` package, which this stock image lacks: in a cluster the stack hands the jobs the testbed image
    # (this distribution, Ray included) instead.
    "ray": Image("rayproject/ray", "2.60.0-py311"),
}

# cluster-autoscaler (eks provider), per Kubernetes minor: upstream releases it in step with Kubernetes and
# recommends the latest patch of the cluster's own minor (cluster-autoscaler/README.md, "Releases", at tag
# cluster-autoscaler-chart-9.59.0: chart 9.47.0+ for 1.33.x, 9.51.0+ for 1.34.x). Chart 9.59.0 defaults to
# v1.35.0, so the stack sets the chart's image from this table for its testbed:cluster.kubernetes_version.
CLUSTER_AUTOSCALER_IMAGES: dict[str, Image] = {
    minor: Image("registry.k8s.io/autoscaling/cluster-autoscaler", tag)
    for minor, tag in {"1.33": "v1.33.6", "1.34": "v1.34.5", "1.35": "v1.35.2"}.items()
}

# Managed services (eks provider).
RDS_POSTGRES_ENGINE_VERSION = "16.10"
EKS_AMI_TYPES = {"cpu": "AL2023_x86_64_STANDARD", "gpu": "AL2023_x86_64_NVIDIA"}

# API versions of the custom resources the stacks create: the storage version of each CRD in the pinned
# releases (Kueue 0.19.2 serves v1beta1 deprecated and stores v1beta2 for every kind, the Cohort included;
# prometheus-operator 0.93.1 of kube-prometheus-stack 88.5.3 serves and stores v1). The vendored CRDs in
# tests/upstream/ are checked against these.
KUEUE_API = "kueue.x-k8s.io/v1beta2"
MONITORING_API = "monitoring.coreos.com/v1"
