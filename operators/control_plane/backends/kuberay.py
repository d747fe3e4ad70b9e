"""Cluster mode, pure part: one KubeRay ``RayJob`` manifest per job, and a RayJob's status mapped back.

Each job becomes ``RayJob <job id>`` in ``tenant-<id>`` (from the placement file Pulumi renders),
labelled with the tenant's LocalQueue and created suspended: Kueue admits it against the tenant's
quota by unsuspending it; KubeRay then starts a Ray cluster (one head, one worker sized to the
job), submits the entrypoint from a submitter Kubernetes Job and deletes the cluster
``ttlSecondsAfterFinished`` after the job ends. The RayJob object itself stays, so its status
remains readable. Nothing here calls the Kubernetes API: the backend that does is
:mod:`operators.control_plane.backends.kuberay_backend`.

Kueue counts every pod of the RayJob against the quota: the head, the worker and the submitter
(:func:`kueue_pod_sets`), so all three carry explicit requests (:func:`rayjob_pod_requests`). The
pods name no node: Kueue adds the admitting ResourceFlavor's ``nodeLabels`` (labels the pool is
guaranteed to carry) and ``tolerations`` to them (infra/addons/kueue.py builds the flavors).
"""

from __future__ import annotations

import importlib.metadata
import math
import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from operators.control_plane.backends.base import (
    LaunchRequest,
    PermanentBackendError,
    PodRequests,
    Resources,
)
from testbed.config import StackConfig
from testbed.quantities import format_memory, parse_memory
from testbed.kube import GPU_RESOURCE, JOB_ID_LABEL, QUEUE_LABEL, TENANT_LABEL
from testbed.placement import Placement, PlacementError
from testbed.settings import DEFAULT_RAYJOB_TTL_SECONDS
from testbed.versions import IMAGES

GROUP, VERSION, PLURAL, KIND = "ray.io", "v1", "rayjobs", "RayJob"
HEAD_CONTAINER, WORKER_CONTAINER, WORKER_GROUP = "ray-head", "ray-worker", "workers"
# KubeRay v1.7.0 ray-operator/controllers/ray/utils/constant.go SubmitterContainerName.
SUBMITTER_CONTAINER = "ray-job-submitter"
# Kueue v0.19.2 pod set names (pkg/controller/jobs/rayjob/rayjob_controller.go).
HEAD_POD_SET, SUBMITTER_POD_SET = "head", "submitter"
# KubeRay names the cluster <rayjob>-<5 chars> and its head Service <cluster>-head-svc (<= 63 chars).
MAX_NAME_LENGTH = 40


class Target(BaseModel):
    """Where and how one tenant's RayJobs are created."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    namespace: str
    local_queue: str
    cluster_queue: str = Field(description="the ClusterQueue behind the LocalQueue (named in Kueue's messages)")
    service_account: str | None = Field(default=None, description="the tenant's job identity: its storage prefix only")


def resolve_targets(placement: Placement, stack: StackConfig) -> dict[str, Target]:
    """The placement, checked against the stack (region, GPU pools); both come from one Pulumi run."""
    if placement.region != stack.region.id:
        raise PlacementError(f"placement is for region {placement.region!r}, the stack for {stack.region.id!r}")
    pools = {p.name for p in stack.node_pools}
    targets = {}
    for tenant, where in placement.tenants.items():
        if where.gpu_pool not in pools:
            raise PlacementError(f"placement of tenant {tenant!r} names unknown GPU pool {where.gpu_pool!r}")
        targets[tenant] = Target(
            tenant=tenant,
            namespace=where.namespace,
            local_queue=where.local_queue,
            cluster_queue=where.cluster_queue,
            service_account=where.service_account,
        )
    return targets


class RayJobOptions(BaseModel):
    """Cluster-wide knobs of the RayJob manifests."""

    image: str = IMAGES["ray"].ref
    ray_version: str = Field(default_factory=lambda: _installed_ray_version())
    ttl_seconds: int = Field(
        default=DEFAULT_RAYJOB_TTL_SECONDS, ge=0, description="keep the finished Ray cluster this long"
    )
    head_cpus: float = Field(default=1, gt=0)
    head_memory: int = Field(default=2 * 2**30, gt=0)
    # `ray job submit` then `ray job logs --follow`; KubeRay's default asks 500m/200Mi, limited to 1 CPU/1Gi.
    submitter_cpus: float = Field(default=0.5, gt=0)
    submitter_memory: int = Field(default=2**30, gt=0)


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


def parse_cpu(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity ('2500m', '8', 0.5) in CPUs."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def pod_template(
    container: str,
    image: str,
    resources: dict,
    labels: dict[str, str],
    extra: dict | None = None,
    service_account: str | None = None,
) -> dict:
    """A PodTemplateSpec for one Ray node: the tenant's ServiceAccount (its identity for its own storage prefix,
    through EKS Pod Identity), and no Kubernetes API token (the pods need no API access)."""
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            **({"serviceAccountName": service_account} if service_account else {}),
            "automountServiceAccountToken": False,
            "containers": [{"name": container, "image": image, "resources": resources}],
            **(extra or {}),
        },
    }


def runtime_env_yaml(request: LaunchRequest) -> str:
    """The job's runtime env; its code package is the ``s3://`` URI the pods fetch with their tenant's identity."""
    runtime_env = request.runtime_env
    package = runtime_env.code_package
    if package is not None:
        if "://" not in package.location:
            raise PermanentBackendError(
                f"code package {package.sha256} of {request.job_id} is on the control "
                f"plane's disk ({package.location}), which the job's pods cannot read: "
                "the kuberay backend needs storage_path in object storage (s3://...)"
            )
        runtime_env = runtime_env.with_working_dir(package.location)
    return yaml.safe_dump(runtime_env.to_ray(), sort_keys=True)


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


def job_pods(
    budget: Resources, labels: dict[str, str], options: RayJobOptions, service_account: str | None = None
) -> tuple[dict, dict, dict]:
    """The pod templates of a job's head, worker and submitter; none names a node (the Kueue flavor does)."""
    head = pod_template(
        HEAD_CONTAINER,
        options.image,
        container_resources(options.head_cpus, options.head_memory),
        labels,
        service_account=service_account,
    )
    worker = pod_template(
        WORKER_CONTAINER,
        options.image,
        container_resources(budget.cpus, budget.memory, budget.gpus),
        labels,
        service_account=service_account,
    )
    # KubeRay fills in the submitter's command (ray-operator/controllers/ray/rayjob_controller.go
    # configureSubmitterContainer, v1.7.0); a Job's pods must not restart in place.
    submitter = pod_template(
        SUBMITTER_CONTAINER,
        options.image,
        container_resources(options.submitter_cpus, options.submitter_memory),
        labels,
        {"restartPolicy": "Never"},
        service_account=service_account,
    )
    return head, worker, submitter


def ray_cluster_spec(head: dict, worker: dict, options: RayJobOptions) -> dict:
    """A small head (no Ray CPUs: work goes to the worker) and one worker holding the job's budget."""
    return {
        "rayVersion": options.ray_version,
        "enableInTreeAutoscaling": False,
        "headGroupSpec": {"rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"}, "template": head},
        "workerGroupSpecs": [
            {
                "groupName": WORKER_GROUP,
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 1,
                "rayStartParams": {},
                "template": worker,
            }
        ],
    }


def job_secret_name(job_id: str) -> str:
    """The per-job Secret holding the job's MLflow login, in the tenant's namespace."""
    return f"{rayjob_name(job_id)}-login"


def build_job_secret(request: LaunchRequest, target: Target, owner_uid: str | None = None) -> dict:
    """The job's Secret (its ``secret_env``), owned by its RayJob so it goes with it (pure: no API calls)."""
    owner = (
        [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": rayjob_name(request.job_id),
                "uid": owner_uid,
                "controller": False,
                "blockOwnerDeletion": False,
            }
        ]
        if owner_uid
        else []
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": job_secret_name(request.job_id),
            "namespace": target.namespace,
            "labels": job_labels(request),
            **({"ownerReferences": owner} if owner else {}),
        },
        "stringData": dict(request.secret_env),
    }


def _with_secret_env(template: dict, request: LaunchRequest) -> dict:
    """A pod template whose containers read the job's secrets from its Secret (``secretKeyRef``), never by value."""
    env = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": job_secret_name(request.job_id), "key": key}}}
        for key in sorted(request.secret_env)
    ]
    for container in template["spec"]["containers"]:
        container["env"] = [*container.get("env", []), *env]
    return template


def build_rayjob(request: LaunchRequest, target: Target, options: RayJobOptions) -> dict:
    """The RayJob manifest of one job (pure: no API calls). Its secrets are not in it: every pod reads them from
    the job's Secret (:func:`build_job_secret`)."""
    labels = {QUEUE_LABEL: target.local_queue, **job_labels(request)}
    head, worker, submitter = (
        _with_secret_env(template, request)
        for template in job_pods(request.budget, job_labels(request), options, target.service_account)
    )
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
            "submitterPodTemplate": submitter,
            "rayClusterSpec": ray_cluster_spec(head, worker, options),
        },
    }


# -- what Kueue counts ----------------------------------------------------------------------------
class PodSet(BaseModel):
    """Identical pods as Kueue counts them against a ClusterQueue's quota."""

    name: str
    count: int
    template: dict


def kueue_pod_sets(rayjob: dict) -> list[PodSet]:
    """The pod sets Kueue v0.19.2 builds for a RayJob: ``head``, each worker group (``replicas``, x ``numOfHosts``),
    and ``submitter`` in K8sJobMode (pkg/controller/jobs/raycluster/common.go ``BuildPodSets``,
    pkg/controller/jobs/rayjob/rayjob_controller.go ``PodSets``/``addSubmitterPodSet``)."""
    spec = rayjob["spec"]
    cluster = spec["rayClusterSpec"]
    sets = [PodSet(name=HEAD_POD_SET, count=1, template=cluster["headGroupSpec"]["template"])]
    sets += [
        PodSet(name=g["groupName"], count=g.get("replicas", 1) * max(g.get("numOfHosts", 1), 1), template=g["template"])
        for g in cluster.get("workerGroupSpecs", [])
    ]
    if spec.get("submissionMode") == "K8sJobMode":
        if "submitterPodTemplate" not in spec:
            raise ValueError("no submitterPodTemplate: Kueue would count its default submitter (500m CPU, 200Mi)")
        sets.append(PodSet(name=SUBMITTER_POD_SET, count=1, template=spec["submitterPodTemplate"]))
    return sets


def pod_requests(template: dict) -> Resources:
    """A pod's requests: its containers' (a container without requests is requested at its limits)."""
    total = Resources(cpus=0, gpus=0, memory=0)
    for container in template["spec"]["containers"]:
        amounts = container.get("resources") or {}
        asked = amounts.get("requests") or amounts.get("limits") or {}
        total = total.plus(
            Resources(
                cpus=parse_cpu(asked.get("cpu", 0)),
                gpus=int(asked.get(GPU_RESOURCE, 0)),
                memory=parse_memory(asked.get("memory", 0)),
            )
        )
    return total


def total_requests(pod_sets: list[PodSet]) -> Resources:
    total = Resources(cpus=0, gpus=0, memory=0)
    for pod_set in pod_sets:
        total = total.plus(pod_requests(pod_set.template), times=pod_set.count)
    return total


def rayjob_pod_requests(budget: Resources, options: RayJobOptions) -> PodRequests:
    """What the RayJob of a job with this budget requests in all: the worker, plus the head and the submitter."""
    head, worker, submitter = job_pods(budget, {}, options)
    overhead = {"Ray head": pod_requests(head), "submitter": pod_requests(submitter)}
    return PodRequests(
        total=total_requests(
            [
                PodSet(name=name, count=1, template=template)
                for name, template in ((HEAD_POD_SET, head), (WORKER_GROUP, worker), (SUBMITTER_POD_SET, submitter))
            ]
        ),
        overhead=overhead,
    )
