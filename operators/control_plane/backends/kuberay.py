"""Cluster mode, pure part: one KubeRay ``RayJob`` manifest per job, and a RayJob's status mapped back.

Each job becomes ``RayJob <job id>`` in ``tenant-<id>`` (from the placement file Pulumi renders),
labelled with the tenant's LocalQueue and created suspended: Kueue admits it against the tenant's
quota by unsuspending it; KubeRay then starts a Ray cluster (one head, one worker sized to the
job), submits the entrypoint from a submitter Kubernetes Job and deletes the cluster
``ttlSecondsAfterFinished`` after the job ends. The RayJob object itself stays, so its status
remains readable. Nothing here calls the Kubernetes API: the backend that does is
:mod:`operators.control_plane.backends.kuberay_backend`.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from operators.control_plane.backends.base import BackendJobInfo, LaunchRequest
from testbed import jobs as J
from testbed.config import StackConfig, format_memory
from testbed.jobs import JobStatus
from testbed.kube import (
    DEFAULT_GPU_TAINT,
    GPU_MODEL_LABEL,
    GPU_RESOURCE,
    JOB_ID_LABEL,
    QUEUE_LABEL,
    STOP_ANNOTATION,
    TENANT_LABEL,
    Taint,
)
from testbed.placement import Placement, PlacementError
from testbed.settings import DEFAULT_RAYJOB_TTL_SECONDS
from testbed.versions import IMAGES

GROUP, VERSION, PLURAL, KIND = "ray.io", "v1", "rayjobs", "RayJob"
HEAD_CONTAINER, WORKER_CONTAINER, WORKER_GROUP = "ray-head", "ray-worker", "workers"
# KubeRay names the cluster <rayjob>-<5 chars> and its head Service <cluster>-head-svc (<= 63 chars).
MAX_NAME_LENGTH = 40


class Target(BaseModel):
    """Where and how one tenant's RayJobs are created."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    namespace: str
    local_queue: str
    gpu_model: str
    gpu_taints: tuple[Taint, ...] = (Taint.parse(DEFAULT_GPU_TAINT),)


def resolve_targets(placement: Placement, stack: StackConfig) -> dict[str, Target]:
    """Join the placement with the stack's pools (GPU model, taints); both come from one Pulumi run."""
    if placement.region != stack.region.id:
        raise PlacementError(f"placement is for region {placement.region!r}, the stack for {stack.region.id!r}")
    pools = {p.name: p for p in stack.node_pools}
    targets = {}
    for tenant, where in placement.tenants.items():
        pool = pools.get(where.gpu_pool)
        if pool is None:
            raise PlacementError(f"placement of tenant {tenant!r} names unknown GPU pool {where.gpu_pool!r}")
        targets[tenant] = Target(tenant=tenant, namespace=where.namespace, local_queue=where.local_queue,
                                 gpu_model=pool.gpu_model, gpu_taints=tuple(pool.parsed_taints))
    return targets


class RayJobOptions(BaseModel):
    """Cluster-wide knobs of the RayJob manifests."""

    image: str = IMAGES["ray"].ref
    ray_version: str = Field(default_factory=lambda: _installed_ray_version())
    ttl_seconds: int = Field(default=DEFAULT_RAYJOB_TTL_SECONDS, ge=0, description="keep the finished Ray cluster this long")
    head_cpus: float = Field(default=1, gt=0)
    head_memory: int = Field(default=2 * 2**30, gt=0)


def _installed_ray_version() -> str:
    """The pinned Ray of pyproject.toml (the jobs' Ray must match the client's)."""
    try:
        return importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return "2.60.0"


# -- pure manifest builders -----------------------------------------------------------------------
def rayjob_name(job_id: str) -> str:
    """A DNS-1035 label (KubeRay derives Service names from it) of at most ``MAX_NAME_LENGTH``."""
    name = re.sub(r"[^a-z0-9-]+", "-", job_id.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"job-{name}".rstrip("-")
    return name[:MAX_NAME_LENGTH].rstrip("-")


def cpu_quantity(cpus: float) -> str:
    return f"{cpus:g}" if float(cpus).is_integer() else f"{math.ceil(cpus * 1000)}m"


def container_resources(cpus: float, memory: int, gpus: int = 0) -> dict:
    """Requests equal to limits (Guaranteed QoS; Kueue and the ResourceQuota count the requests)."""
    amounts = {"cpu": cpu_quantity(cpus), "memory": format_memory(memory)}
    if gpus:
        amounts[GPU_RESOURCE] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def gpu_scheduling(target: Target) -> dict:
    """Pod-spec fields that put a worker on the tenant's GPU pool."""
    return {"nodeSelector": {GPU_MODEL_LABEL: target.gpu_model},
            "tolerations": [t.toleration() for t in target.gpu_taints]}


def pod_template(container: str, image: str, resources: dict, labels: dict[str, str], extra: dict | None = None) -> dict:
    """A PodTemplateSpec for one Ray node; the pods need no Kubernetes API access."""
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": container, "image": image, "resources": resources}],
            **(extra or {}),
        },
    }


def runtime_env_yaml(request: LaunchRequest) -> str:
    return yaml.safe_dump(request.runtime_env.to_ray(), sort_keys=True)


def job_labels(request: LaunchRequest) -> dict[str, str]:
    return {TENANT_LABEL: request.tenant, JOB_ID_LABEL: request.job_id}


def entrypoint_fields(request: LaunchRequest) -> dict:
    """The driver's own reservation (command jobs hold the job's resources in the driver)."""
    fields: dict[str, Any] = {}
    if request.driver.cpus:
        fields["entrypointNumCpus"] = request.driver.cpus
    if request.driver.gpus:
        fields["entrypointNumGpus"] = request.driver.gpus
    return fields


def ray_cluster_spec(request: LaunchRequest, target: Target, options: RayJobOptions) -> dict:
    """A small head (no Ray CPUs: work goes to the worker) and one worker holding the job's budget."""
    need = request.budget
    labels = job_labels(request)
    head = pod_template(HEAD_CONTAINER, options.image, container_resources(options.head_cpus, options.head_memory),
                        labels)
    worker = pod_template(WORKER_CONTAINER, options.image, container_resources(need.cpus, need.memory, need.gpus),
                          labels, gpu_scheduling(target) if need.gpus else None)
    return {
        "rayVersion": options.ray_version,
        "enableInTreeAutoscaling": False,
        "headGroupSpec": {"rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"}, "template": head},
        "workerGroupSpecs": [{"groupName": WORKER_GROUP, "replicas": 1, "minReplicas": 1, "maxReplicas": 1,
                              "rayStartParams": {}, "template": worker}],
    }


def build_rayjob(request: LaunchRequest, target: Target, options: RayJobOptions) -> dict:
    """The RayJob manifest of one job (pure: no API calls)."""
    labels = {QUEUE_LABEL: target.local_queue, **job_labels(request)}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": rayjob_name(request.job_id), "namespace": target.namespace, "labels": labels},
        "spec": {
            "suspend": True,  # Kueue admits the job by unsuspending it
            "entrypoint": request.entrypoint,
            "jobId": request.job_id,
            "runtimeEnvYAML": runtime_env_yaml(request),
            "metadata": request.metadata,
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": options.ttl_seconds,
            **entrypoint_fields(request),
            "rayClusterSpec": ray_cluster_spec(request, target, options),
        },
    }


# -- status ---------------------------------------------------------------------------------------
_TERMINAL_JOB_STATUSES = {s.value for s in J.TERMINAL_STATUSES}
_FAILED_DEPLOYMENTS = {"Failed", "ValidationFailed"}
_WAITING_MESSAGES = {
    "": "created; waiting for KubeRay",
    "New": "created; waiting for KubeRay",
    "Suspended": "waiting for Kueue to admit it",
    "Suspending": "waiting for Kueue to admit it",
    "Initializing": "admitted; starting the Ray cluster",
    "Waiting": "waiting for the Ray cluster",
    "Retrying": "retrying on a new Ray cluster",
}


def parse_time(value: str | None) -> float | None:
    """RFC 3339 (``2025-03-01T09:00:00Z``) to epoch seconds."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def rayjob_status(obj: dict) -> JobStatus:
    status = obj.get("status") or {}
    job, deployment = status.get("jobStatus") or "", status.get("jobDeploymentStatus") or ""
    if (obj.get("metadata") or {}).get("annotations", {}).get(STOP_ANNOTATION) and job not in _TERMINAL_JOB_STATUSES:
        return JobStatus.STOPPED
    if deployment == "Retrying":
        return JobStatus.PENDING  # a failed attempt that KubeRay retries is not the end
    if job in _TERMINAL_JOB_STATUSES:
        return JobStatus(job)
    if deployment in _FAILED_DEPLOYMENTS:
        return JobStatus.FAILED
    return JobStatus.RUNNING if job == "RUNNING" else JobStatus.PENDING


def rayjob_message(obj: dict, status: JobStatus) -> str:
    info = obj.get("status") or {}
    if status == JobStatus.STOPPED and (obj.get("metadata") or {}).get("annotations", {}).get(STOP_ANNOTATION):
        return "stopped"
    text = info.get("message") or info.get("reason") or ""
    if status == JobStatus.PENDING and not text:
        return _WAITING_MESSAGES.get(info.get("jobDeploymentStatus") or "", "")
    return text


def job_info(obj: dict) -> BackendJobInfo:
    """Map a RayJob object (its ``status``) to what the control plane tracks."""
    info = obj.get("status") or {}
    ray_times = info.get("rayJobInfo") or {}
    status = rayjob_status(obj)
    end = parse_time(ray_times.get("endTime") or info.get("endTime")) if status.terminal else None
    return BackendJobInfo(status=status, message=rayjob_message(obj, status),
                          start_time=parse_time(ray_times.get("startTime") or info.get("startTime")), end_time=end)
