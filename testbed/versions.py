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
    "gpu-operator": Chart("gpu-operator", "v25.3.2", "https://helm.ngc.nvidia.com/nvidia"),
    "kuberay-operator": Chart("kuberay-operator", "1.4.2", "https://ray-project.github.io/kuberay-helm/"),
    "kueue": Chart("oci://registry.k8s.io/kueue/charts/kueue", "0.13.4"),
    "cluster-autoscaler": Chart("cluster-autoscaler", "9.50.1", "https://kubernetes.github.io/autoscaler"),
    "kube-prometheus-stack": Chart(
        "kube-prometheus-stack", "77.5.0", "https://prometheus-community.github.io/helm-charts"
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

# Managed services (eks provider).
RDS_POSTGRES_ENGINE_VERSION = "16.10"
EKS_AMI_TYPES = {"cpu": "AL2023_x86_64_STANDARD", "gpu": "AL2023_x86_64_NVIDIA"}

# Kueue API versions served by the pinned chart.
KUEUE_API = "kueue.x-k8s.io/v1beta1"
KUEUE_COHORT_API = "kueue.x-k8s.io/v1alpha1"
MONITORING_API = "monitoring.coreos.com/v1"
