"""Cluster mode: the backend that creates, reads and deletes one KubeRay ``RayJob`` per job.

The manifests and the status mapping are pure functions in
:mod:`operators.control_plane.backends.kuberay` (Kueue's Workloads in
:mod:`operators.control_plane.backends.kueue_workload`); this module talks to the Kubernetes API.
The backend's reference of a job is ``<namespace>/<name>`` of its RayJob.

Kueue is the one queue (``queues_jobs``): every admitted job becomes a suspended RayJob at once and
its message carries Kueue's reason, read from the RayJob's Workload. The status sync reads all jobs
with ``info_many``: per tenant namespace one list of the testbed's RayJobs and one of the Workloads,
however many jobs there are (more only when a namespace holds over ``LIST_PAGE`` of them).

Stop deletes the RayJob (foreground propagation: the Ray cluster and the submitter Job go with
it and Kueue releases the quota). Suspending is not a stop here: Kueue owns ``spec.suspend`` for
queued RayJobs and unsuspends an admitted one again, and KubeRay resets a suspended RayJob to a
fresh, never-run state. Before deleting, the backend annotates the RayJob with
``testbed.io/stop-requested-at``, so ``info`` reports STOPPED while the object is being deleted.
Once it is gone the backend knows nothing of it (JobNotFound): the control plane recorded the stop
request and the output so far in the job's row first, so every replica reports it STOPPED with
those logs. The backend keeps no state of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any, Sequence

from operators.control_plane.backends.base import (
    AlreadyExists,
    Backend,
    BackendAnswer,
    BackendError,
    BackendJobInfo,
    Capacity,
    JobNotFound,
    LaunchRequest,
    PodRequests,
    Resources,
)
from operators.control_plane.backends.rayjob_status import job_info
from operators.control_plane.backends.kuberay import (
    GROUP,
    PLURAL,
    VERSION,
    RayJobOptions,
    Target,
    build_job_secret,
    build_rayjob,
    rayjob_pod_requests,
)
from operators.control_plane.backends.kueue_workload import (
    JOB_UID_LABEL,
    WORKLOAD_GROUP,
    WORKLOAD_PLURAL,
    WORKLOAD_VERSION,
    workloads_by_owner,
)
from testbed.kube import JOB_ID_LABEL, STOP_ANNOTATION

log = logging.getLogger("testbed.control_plane")
LIST_PAGE = 500  # objects per list call


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
    queues_jobs = True  # Kueue admits the suspended RayJobs against the tenants' ClusterQueues
    watch_starts = False  # each look lists RayJobs and Workloads: no 50 ms watch (billing starts within a round)

    def __init__(
        self,
        targets: dict[str, Target],
        options: RayJobOptions | None = None,
        custom_api: Any = None,
        core_api: Any = None,
        capacity: Capacity | None = None,
    ):
        self.targets = targets
        self.options = options or RayJobOptions()
        self._capacity = capacity or Capacity()
        self._apis = (custom_api, core_api) if custom_api is not None else None
        self._lock = threading.Lock()
        self._cluster_queues = {t.namespace: t.cluster_queue for t in targets.values()}

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
        """Call the API; the one place its failures are translated.

        404 -> JobNotFound, 409 -> AlreadyExists, anything else (403, 5xx, no connection) -> BackendError.
        """
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise JobNotFound(f"{what}: not found") from None
            if exc.status == 409:
                raise AlreadyExists(f"{what}: already exists") from None
            if exc.status == 403:
                raise BackendError(
                    f"{what}: forbidden for the control plane's ServiceAccount (check its Role)"
                ) from None
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
            created = self._call(
                f"create RayJob {ref}",
                self.custom_api.create_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                manifest,
            )
        except AlreadyExists:
            created = self._adopt(ref, request.job_id)  # created before a crash: adopt it
        if request.secret_env:  # the RayJob is suspended until Kueue admits it: its Secret is there before its pods
            self._ensure_secret(request, namespace, ((created or {}).get("metadata") or {}).get("uid"))
        return ref

    def _ensure_secret(self, request: LaunchRequest, namespace: str, owner_uid: str | None) -> None:
        secret = build_job_secret(request, self.target(request.tenant), owner_uid)
        name = secret["metadata"]["name"]
        try:
            self._call(f"create Secret {namespace}/{name}", self.core_api.create_namespaced_secret, namespace, secret)
        except AlreadyExists:
            self._call(
                f"replace Secret {namespace}/{name}", self.core_api.replace_namespaced_secret, name, namespace, secret
            )

    def _adopt(self, ref: str, job_id: str) -> dict:
        existing = self._get(ref)
        owner = (existing.get("metadata") or {}).get("labels", {}).get(JOB_ID_LABEL)
        if owner != job_id:
            raise BackendError(f"RayJob {ref} exists but belongs to job {owner!r}, not {job_id!r}")
        return existing

    def _get(self, ref: str) -> dict:
        namespace, name = split_ref(ref)
        return self._call(
            f"RayJob {ref}", self.custom_api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )

    def info(self, ref: str) -> BackendJobInfo:
        """The RayJob (one GET) and its Workload (one list by Kueue's job-uid label)."""
        try:
            obj = self._get(ref)
        except JobNotFound:
            return self._gone(ref)
        namespace, _ = split_ref(ref)
        uid = (obj.get("metadata") or {}).get("uid")
        workloads = self._workloads(namespace, f"{JOB_UID_LABEL}={uid}") if uid else {}
        return job_info(obj, workloads.get(uid), self._cluster_queues.get(namespace, ""))

    def info_many(self, refs: Sequence[str]) -> dict[str, BackendAnswer]:
        """Every job's state from two list calls per namespace: its testbed RayJobs and its Workloads."""
        answers: dict[str, BackendAnswer] = {}
        wanted: dict[str, list[str]] = defaultdict(list)
        for ref in refs:
            try:
                wanted[split_ref(ref)[0]].append(ref)
            except JobNotFound as exc:
                answers[ref] = exc
        for namespace, namespace_refs in wanted.items():
            try:
                rayjobs = {
                    f"{namespace}/{o['metadata']['name']}": o
                    for o in self._list(f"RayJobs of {namespace}", GROUP, VERSION, namespace, PLURAL, JOB_ID_LABEL)
                }
            except BackendError as exc:
                answers.update(dict.fromkeys(namespace_refs, exc))
                continue
            workloads = self._workloads(namespace, JOB_UID_LABEL)
            for ref in namespace_refs:
                answers[ref] = self._answer(ref, rayjobs.get(ref), workloads)
        return answers

    def _answer(self, ref: str, obj: dict | None, workloads: dict[str, dict]) -> BackendAnswer:
        if obj is None:
            try:
                return self._gone(ref)
            except JobNotFound as exc:
                return exc
        uid = (obj.get("metadata") or {}).get("uid")
        return job_info(obj, workloads.get(uid) if uid else None, self._cluster_queues.get(split_ref(ref)[0], ""))

    def _gone(self, ref: str) -> BackendJobInfo:
        """A RayJob that no longer exists (a stop that deleted it is on the job's record, which the sync reads)."""
        raise JobNotFound(f"RayJob {ref} no longer exists")

    def _list(self, what: str, group: str, version: str, namespace: str, plural: str, selector: str) -> list[dict]:
        """All objects of a namespace matching a label selector, ``LIST_PAGE`` per call."""
        items: list[dict] = []
        token = None
        while True:
            page = self._call(
                what,
                self.custom_api.list_namespaced_custom_object,
                group,
                version,
                namespace,
                plural,
                label_selector=selector,
                limit=LIST_PAGE,
                **({"_continue": token} if token else {}),
            )
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def _workloads(self, namespace: str, selector: str) -> dict[str, dict]:
        """RayJob uid -> Workload; {} when they cannot be read (the jobs' states do not depend on them)."""
        try:
            return workloads_by_owner(
                self._list(
                    f"Workloads of {namespace}", WORKLOAD_GROUP, WORKLOAD_VERSION, namespace, WORKLOAD_PLURAL, selector
                )
            )
        except BackendError as exc:
            log.warning("no Kueue reasons for the jobs in %s: %s", namespace, exc)
            return {}

    def pod_requests(self, budget: Resources) -> PodRequests:
        """The worker (the budget), the Ray head and the submitter pod: what Kueue counts."""
        return rayjob_pod_requests(budget, self.options)

    def logs(self, ref: str) -> str:
        """The submitter pod's output (``ray job submit`` follows the driver), else the head pod's."""
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
        pods = self._call(
            f"pods of {namespace} ({selector})", self.core_api.list_namespaced_pod, namespace, label_selector=selector
        )
        items = list(getattr(pods, "items", None) or [])
        return max(items, key=_created, default=None)

    def _pod_log(self, namespace: str, pod: Any) -> str:
        container = pod.spec.containers[0].name if pod.spec and pod.spec.containers else None
        try:
            return self._call(
                f"log of pod {namespace}/{pod.metadata.name}",
                self.core_api.read_namespaced_pod_log,
                pod.metadata.name,
                namespace,
                container=container,
            )
        except JobNotFound:
            raise BackendError(f"pod {namespace}/{pod.metadata.name} is gone") from None

    def stop(self, ref: str) -> None:
        """Annotate, then delete the RayJob (and with it the Ray cluster)."""
        namespace, name = split_ref(ref)
        self._get(ref)  # JobNotFound if it is already gone
        self._annotate_stop(ref, f"{time.time():.3f}")
        try:
            self._call(
                f"delete RayJob {ref}",
                self.custom_api.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                propagation_policy="Foreground",
            )
        except JobNotFound:
            pass
        except BackendError:
            self._annotate_stop(ref, None)  # still running: do not let it read as STOPPED
            raise

    def _annotate_stop(self, ref: str, value: str | None) -> None:
        namespace, name = split_ref(ref)
        self._call(
            f"annotate RayJob {ref}",
            self.custom_api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": {STOP_ANNOTATION: value}}},
        )

    def capacity(self) -> Capacity:
        return self._capacity

    def healthy(self) -> bool:
        """The API answers and the RayJob CRD is served (listing one tenant's RayJobs)."""
        if not self.targets:
            return False
        namespace = next(iter(self.targets.values())).namespace
        try:
            self._call(
                "RayJobs", self.custom_api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, limit=1
            )
            return True
        except BackendError:
            return False

    def close(self) -> None:
        api_client = getattr(self._apis[0], "api_client", None) if self._apis else None
        if api_client is not None and hasattr(api_client, "close"):
            api_client.close()
