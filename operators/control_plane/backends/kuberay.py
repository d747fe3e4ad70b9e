"""Cluster mode: one KubeRay ``RayJob`` per job in the tenant's namespace, admitted by Kueue.

Each job becomes ``RayJob <job id>`` in ``tenant-<id>`` (from the placement file Pulumi renders),
labelled with the tenant's LocalQueue and created suspended: Kueue admits it against the tenant's
quota by unsuspending it; KubeRay then starts a Ray cluster (one head, one worker sized to the
job), submits the entrypoint from a submitter Kubernetes Job and deletes the cluster
``ttlSecondsAfterFinished`` after the job ends. The RayJob object itself stays, so its status
remains readable; the backend's reference is ``<namespace>/<name>``.

Stop deletes the RayJob (foreground propagation: the Ray cluster and the submitter Job go with
it and Kueue releases the quota). Suspending is not a stop here: Kueue owns ``spec.suspend`` for
queued RayJobs and unsuspends an admitted one again, and KubeRay resets a suspended RayJob to a
fresh, never-run state. Before deleting, the backend annotates the RayJob with
``testbed.io/stop-requested-at`` and keeps its logs, so ``info`` reports STOPPED (not "lost") while
the object is being deleted and, in this process, after it is gone.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
import re
import threading
import time
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from operators.control_plane.backends.base import (
    Backend,
    BackendError,
    BackendJobInfo,
    Capacity,
    JobNotFound,
    LaunchRequest,
)
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
from testbed.settings import DEFAULT_RAYJOB_TTL_SECONDS, ControlPlaneSettings
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


class JobResources(BaseModel):
    """What the job's Ray worker gets: the job's whole budget, not only the driver's share."""

    cpus: float = Field(gt=0)
    gpus: int = Field(ge=0)
    memory: int = Field(gt=0)

    @classmethod
    def of(cls, request: LaunchRequest) -> "JobResources":
        """From the job's budget in its env (``TESTBED_CPUS`` ...), else from the driver's share."""
        env = request.env
        return cls(
            cpus=float(env.get(J.ENV_CPUS, request.driver_cpus)),
            gpus=math.ceil(float(env.get(J.ENV_GPUS, request.driver_gpus))),
            memory=int(env.get(J.ENV_MEMORY_BYTES, request.driver_memory or 2**30)),
        )


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
    runtime_env: dict[str, Any] = {"env_vars": dict(request.env)}
    if request.working_dir:
        runtime_env["working_dir"] = request.working_dir
    return yaml.safe_dump(runtime_env, sort_keys=True)


def job_labels(request: LaunchRequest) -> dict[str, str]:
    return {TENANT_LABEL: request.tenant, JOB_ID_LABEL: request.job_id}


def entrypoint_fields(request: LaunchRequest) -> dict:
    """The driver's own reservation (command jobs hold the job's resources in the driver)."""
    fields: dict[str, Any] = {}
    if request.driver_cpus:
        fields["entrypointNumCpus"] = request.driver_cpus
    if request.driver_gpus:
        fields["entrypointNumGpus"] = request.driver_gpus
    return fields


def ray_cluster_spec(request: LaunchRequest, target: Target, options: RayJobOptions) -> dict:
    """A small head (no Ray CPUs: work goes to the worker) and one worker holding the job's budget."""
    need = JobResources.of(request)
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
            "metadata": {J.TAG_TENANT: request.tenant, **request.metadata},
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


# -- the backend ----------------------------------------------------------------------------------
def load_kube_apis() -> tuple[Any, Any]:
    """(CustomObjectsApi, CoreV1Api) from the in-cluster ServiceAccount, else KUBECONFIG."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise BackendError(f"no Kubernetes credentials (in-cluster or KUBECONFIG): {exc}") from None
    api = client.ApiClient()
    return client.CustomObjectsApi(api), client.CoreV1Api(api)


class _AlreadyExists(BackendError):
    """The API answered 409 Conflict."""


def _created(obj: Any) -> float:
    stamp = obj.metadata.creation_timestamp
    return stamp.timestamp() if stamp else 0.0


def split_ref(ref: str) -> tuple[str, str]:
    namespace, _, name = ref.partition("/")
    if not name:
        raise JobNotFound(f"{ref!r} is not a RayJob reference (<namespace>/<name>)")
    return namespace, name


class KubeRayBackend(Backend):
    """Runs each job as a Kueue-queued KubeRay RayJob; see the module docstring."""

    name = "kuberay"

    def __init__(self, targets: dict[str, Target], options: RayJobOptions | None = None,
                 custom_api: Any = None, core_api: Any = None, capacity: Capacity | None = None):
        self.targets = targets
        self.options = options or RayJobOptions()
        self._capacity = capacity or Capacity()
        self._apis = (custom_api, core_api) if custom_api is not None else None
        self._lock = threading.Lock()
        self._stopped: dict[str, BackendJobInfo] = {}
        self._stopped_logs: dict[str, str] = {}

    @property
    def custom_api(self) -> Any:
        return self._kube()[0]

    @property
    def core_api(self) -> Any:
        return self._kube()[1]

    def _kube(self) -> tuple[Any, Any]:
        with self._lock:
            if self._apis is None:
                self._apis = load_kube_apis()
            return self._apis

    def _call(self, what: str, fn, *args, **kwargs) -> Any:
        """Call the API; 404 -> JobNotFound, any other failure -> BackendError."""
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise JobNotFound(f"{what}: not found") from None
            if exc.status == 409:
                raise _AlreadyExists(f"{what}: already exists") from None
            if exc.status == 403:
                raise BackendError(f"{what}: forbidden for the control plane's ServiceAccount (check its Role)") from None
            raise BackendError(f"{what}: Kubernetes API {exc.status} {exc.reason}") from None
        except BackendError:
            raise
        except Exception as exc:  # connection refused, TLS, timeouts
            raise BackendError(f"{what}: Kubernetes API not reachable: {exc}") from None

    def target(self, tenant: str) -> Target:
        try:
            return self.targets[tenant]
        except KeyError:
            raise BackendError(f"tenant {tenant!r} has no placement (namespace, queue) in this cluster") from None

    # -- Backend interface ----------------------------------------------------------------------
    def submit(self, request: LaunchRequest) -> str:
        try:
            manifest = build_rayjob(request, self.target(request.tenant), self.options)
        except ValueError as exc:  # a budget no RayJob can carry (e.g. zero CPUs)
            raise BackendError(f"cannot describe job {request.job_id} as a RayJob: {exc}") from None
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        ref = f"{namespace}/{name}"
        try:
            self._call(f"create RayJob {ref}", self.custom_api.create_namespaced_custom_object,
                       GROUP, VERSION, namespace, PLURAL, manifest)
        except _AlreadyExists:
            self._adopt(ref, request.job_id)  # created before a crash: adopt it
        return ref

    def _adopt(self, ref: str, job_id: str) -> None:
        existing = self._get(ref)
        owner = (existing.get("metadata") or {}).get("labels", {}).get(JOB_ID_LABEL)
        if owner != job_id:
            raise BackendError(f"RayJob {ref} exists but belongs to job {owner!r}, not {job_id!r}")

    def _get(self, ref: str) -> dict:
        namespace, name = split_ref(ref)
        return self._call(f"RayJob {ref}", self.custom_api.get_namespaced_custom_object,
                          GROUP, VERSION, namespace, PLURAL, name)

    def info(self, ref: str) -> BackendJobInfo:
        try:
            return job_info(self._get(ref))
        except JobNotFound:
            if ref in self._stopped:
                return self._stopped[ref]
            raise JobNotFound(f"RayJob {ref} no longer exists") from None

    def logs(self, ref: str) -> str:
        """The submitter pod's output (``ray job submit`` follows the driver), else the head pod's."""
        if ref in self._stopped_logs:
            return self._stopped_logs[ref]
        try:
            obj = self._get(ref)
        except JobNotFound:
            raise JobNotFound(f"RayJob {ref} no longer exists") from None
        namespace, name = split_ref(ref)
        cluster = (obj.get("status") or {}).get("rayClusterName")
        selectors = [f"job-name={name}"] + ([f"ray.io/cluster={cluster},ray.io/node-type=head"] if cluster else [])
        for selector in selectors:
            pod = self._newest_pod(namespace, selector)
            if pod is not None:
                return self._pod_log(namespace, pod)
        raise BackendError(f"no submitter or head pod of RayJob {ref} (not admitted yet, or already cleaned up)")

    def _newest_pod(self, namespace: str, selector: str) -> Any:
        pods = self._call(f"pods of {namespace} ({selector})", self.core_api.list_namespaced_pod, namespace,
                          label_selector=selector)
        items = list(getattr(pods, "items", None) or [])
        return max(items, key=_created, default=None)

    def _pod_log(self, namespace: str, pod: Any) -> str:
        container = pod.spec.containers[0].name if pod.spec and pod.spec.containers else None
        try:
            return self._call(f"log of pod {namespace}/{pod.metadata.name}", self.core_api.read_namespaced_pod_log,
                              pod.metadata.name, namespace, container=container)
        except JobNotFound:
            raise BackendError(f"pod {namespace}/{pod.metadata.name} is gone") from None

    def stop(self, ref: str) -> None:
        """Annotate, keep the logs, delete the RayJob (and with it the Ray cluster); remember it as STOPPED."""
        namespace, name = split_ref(ref)
        started = job_info(self._get(ref)).start_time  # JobNotFound if it is already gone
        logs = self._logs_or_none(ref)
        now = time.time()
        self._annotate_stop(ref, f"{now:.3f}")
        try:
            self._call(f"delete RayJob {ref}", self.custom_api.delete_namespaced_custom_object, GROUP, VERSION,
                       namespace, PLURAL, name, propagation_policy="Foreground")
        except JobNotFound:
            pass
        except BackendError:
            self._annotate_stop(ref, None)  # still running: do not let it read as STOPPED
            raise
        self._stopped[ref] = BackendJobInfo(status=JobStatus.STOPPED, message="stopped", start_time=started,
                                            end_time=now)
        if logs is not None:
            self._stopped_logs[ref] = logs

    def _annotate_stop(self, ref: str, value: str | None) -> None:
        namespace, name = split_ref(ref)
        self._call(f"annotate RayJob {ref}", self.custom_api.patch_namespaced_custom_object, GROUP, VERSION,
                   namespace, PLURAL, name, {"metadata": {"annotations": {STOP_ANNOTATION: value}}})

    def _logs_or_none(self, ref: str) -> str | None:
        try:
            return self.logs(ref)
        except BackendError:
            return None  # best effort: the job may never have started

    def capacity(self) -> Capacity:
        return self._capacity

    def healthy(self) -> bool:
        """The API answers and the RayJob CRD is served (listing one tenant's RayJobs)."""
        if not self.targets:
            return False
        namespace = next(iter(self.targets.values())).namespace
        try:
            self._call("RayJobs", self.custom_api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                       limit=1)
            return True
        except BackendError:
            return False

    def close(self) -> None:
        api_client = getattr(self._apis[0], "api_client", None) if self._apis else None
        if api_client is not None and hasattr(api_client, "close"):
            api_client.close()


def kuberay_backend(settings: ControlPlaneSettings, stack: StackConfig) -> KubeRayBackend:
    """The backend described by the control plane's settings (``backend: kuberay``)."""
    if settings.placement_file is None:
        raise PlacementError("backend 'kuberay' needs placement_file (the placement.yaml Pulumi renders)")
    targets = resolve_targets(Placement.from_file(settings.placement_file), stack)
    options = RayJobOptions(image=settings.ray_image, ttl_seconds=settings.rayjob_ttl_seconds)
    return KubeRayBackend(targets, options, capacity=Capacity(cpus=settings.capacity_cpus, gpus=settings.capacity_gpus))
