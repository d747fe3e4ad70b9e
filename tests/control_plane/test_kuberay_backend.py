"""The cluster-mode backend: RayJob manifests, status mapping, API calls (fake) and, when a cluster
with KubeRay and Kueue is reachable through KUBECONFIG, a real job."""

from __future__ import annotations

import json
import os
import time
import uuid

import kubernetes_validate
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from infra.addons.control_plane import render_placement, render_settings, render_stack_file
from tests.infra.harness import schema_version
from operators.control_plane.backends.base import BackendError, JobNotFound, LaunchRequest
from operators.control_plane.backends.rayjob_status import job_info
from operators.control_plane.backends.kuberay import (
    MAX_NAME_LENGTH,
    RayJobOptions,
    Target,
    build_rayjob,
    rayjob_name,
    resolve_targets,
)
from operators.control_plane.backends.factory import make_backend
from operators.control_plane.backends.kuberay_backend import KubeRayBackend
from testbed.settings import ControlPlaneSettings
from testbed import jobs as J
from testbed.config import load_region
from testbed.kube import GPU_RESOURCE, JOB_ID_LABEL, QUEUE_LABEL, STOP_ANNOTATION, TENANT_LABEL
from testbed.versions import KUEUE_API
from tests.control_plane.kube_fakes import FakeCore, FakeCustomObjects
from testbed.placement import Placement, PlacementError
from testbed.jobs import JobStatus

REGION = "gyeongnam"
GIB = 2**30


@pytest.fixture(scope="module")
def stack():
    return load_region(REGION)


@pytest.fixture(scope="module")
def targets(stack):
    return resolve_targets(Placement.model_validate(yaml.safe_load(render_placement(stack))), stack)


@pytest.fixture(scope="module")
def target(targets) -> Target:
    return next(iter(targets.values()))


def launch(
    tenant: str,
    cpus: float = 2,
    gpus: int = 0,
    memory: int = 4 * GIB,
    driver: bool = False,
    job_id: str = "job-0123456789abcdef",
) -> LaunchRequest:
    """A request shaped like launch.launch_request builds it, minus the ``TESTBED_CPUS``... env
    (the backend sizes the job from ``budget``, never from env strings)."""
    env = {
        J.ENV_MLFLOW_TRACKING_URI: "http://mlflow.testbed-system.svc.cluster.local:5000",
        J.ENV_TENANT: tenant,
        J.ENV_JOB_ID: job_id,
        "DATASET": "sample",
    }
    budget = {"cpus": cpus, "gpus": gpus, "memory": memory}
    return LaunchRequest(
        job_id=job_id,
        tenant=tenant,
        region=REGION,
        entrypoint="python -m workloads.train --epochs 1",
        budget=budget,
        driver=budget if driver else {"cpus": 0, "gpus": 0, "memory": 0},
        runtime_env={"env_vars": env},
    )


def groups(manifest: dict) -> tuple[dict, dict]:
    cluster = manifest["spec"]["rayClusterSpec"]
    [worker] = cluster["workerGroupSpecs"]
    return cluster["headGroupSpec"], worker


# -- manifests ----------------------------------------------------------------------------------------
def test_cpu_job_manifest(target):
    manifest = build_rayjob(launch(target.tenant, cpus=2.5, memory=6 * GIB), target, RayJobOptions())
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayJob")
    meta, spec = manifest["metadata"], manifest["spec"]
    assert meta["namespace"] == target.namespace == f"tenant-{target.tenant}"
    assert meta["labels"] == {
        QUEUE_LABEL: target.local_queue,
        TENANT_LABEL: target.tenant,
        JOB_ID_LABEL: "job-0123456789abcdef",
    }
    assert spec["suspend"] is True and spec["shutdownAfterJobFinishes"] is True
    # The Ray cluster goes when the job ends, when Kueue releases its quota; the submitter Job (the logs) stays.
    assert spec["submissionMode"] == "K8sJobMode" and spec["ttlSecondsAfterFinished"] == 0
    assert spec["jobId"] == "job-0123456789abcdef"
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env[J.ENV_MLFLOW_TRACKING_URI].startswith("http://mlflow.") and env["DATASET"] == "sample"
    assert spec["metadata"] == {J.TAG_TENANT: target.tenant, J.TAG_JOB_ID: "job-0123456789abcdef", J.TAG_REGION: REGION}
    head, worker = groups(manifest)
    [container] = worker["template"]["spec"]["containers"]
    assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": "2500m", "memory": "6Gi"}
    assert "nodeSelector" not in worker["template"]["spec"] and "tolerations" not in worker["template"]["spec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the job's work goes to the worker
    assert "entrypointNumCpus" not in spec  # a template's driver reserves nothing


def test_gpu_job_manifest(target):
    manifest = build_rayjob(
        launch(target.tenant, cpus=8, gpus=2, memory=32 * GIB, driver=True),
        target,
        RayJobOptions(image="registry.example/ray:2.60.0-gpu", ttl_seconds=60),
    )
    head, worker = groups(manifest)
    pod = worker["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "registry.example/ray:2.60.0-gpu"
    assert container["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", GPU_RESOURCE: "2"}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    # No pod names a node: Kueue adds the admitting flavor's nodeLabels (labels the GPU pool is guaranteed to
    # carry, for eks and existing pools alike) and its tolerations (infra/addons/kueue.py flavor_spec).
    templates = [head["template"], worker["template"], manifest["spec"]["submitterPodTemplate"]]
    for template in templates:
        assert not {"nodeSelector", "affinity", "tolerations", "nodeName"} & set(template["spec"])
    assert GPU_RESOURCE not in head["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert manifest["spec"]["entrypointNumCpus"] == 8 and manifest["spec"]["entrypointNumGpus"] == 2
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 60


@pytest.mark.parametrize("gpus", [0, 1])
def test_manifest_validates(stack, target, gpus):
    """Pod templates against the Kubernetes 1.33 schema; the RayJob's CRD-required fields are present."""
    manifest = build_rayjob(launch(target.tenant, gpus=gpus), target, RayJobOptions())
    version = schema_version(stack.cluster.kubernetes_version)
    assert version == "1.33.0"
    spec = manifest["spec"]
    cluster = spec["rayClusterSpec"]
    assert spec["entrypoint"] and cluster["rayVersion"] == "2.60.0"
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "ray", "namespace": "t"},
            "template": group["template"],
        }
        kubernetes_validate.validate(template, version, strict=True)
    for worker in cluster["workerGroupSpecs"]:
        assert worker["groupName"] and worker["template"]["spec"]["containers"]
        assert worker["minReplicas"] <= worker["replicas"] <= worker["maxReplicas"]
    meta = manifest["metadata"]
    for value in [meta["name"], *meta["labels"].values()]:  # names and label values Kubernetes accepts
        assert len(value) <= 63 and value[0].isalnum() and value[-1].isalnum()


def test_rayjob_names_are_dns_safe():
    assert rayjob_name("job-0123456789abcdef") == "job-0123456789abcdef"
    assert rayjob_name("Job_ABC.1") == "job-abc-1"
    assert rayjob_name("42") == "job-42"
    long = rayjob_name("job-" + "a" * 80 + "-")
    assert len(long) <= MAX_NAME_LENGTH and not long.endswith("-")


def test_placement_must_match_the_stack(stack):
    placement = Placement.model_validate(yaml.safe_load(render_placement(stack)))
    with pytest.raises(PlacementError, match="region"):
        resolve_targets(placement.model_copy(update={"region": "jeju"}), stack)
    tenant, where = next(iter(placement.tenants.items()))
    broken = placement.model_copy(update={"tenants": {tenant: where.model_copy(update={"gpu_pool": "nope"})}})
    with pytest.raises(PlacementError, match="nope"):
        resolve_targets(broken, stack)


# -- status mapping -----------------------------------------------------------------------------------
def rayjob(job: str = "", deployment: str = "", annotations: dict | None = None, **status) -> dict:
    return {
        "metadata": {"name": "job-x", "annotations": annotations or {}},
        "status": {"jobStatus": job, "jobDeploymentStatus": deployment, **status},
    }


T0, T1 = "2025-03-01T09:00:00Z", "2025-03-01T09:05:30Z"
E0, E1 = 1740819600.0, 1740819930.0


@pytest.mark.parametrize(
    "obj,status,message",
    [
        ({"metadata": {"name": "job-x"}}, JobStatus.PENDING, "created; waiting for KubeRay"),
        (rayjob("", "Suspended"), JobStatus.PENDING, "waiting for Kueue to admit it"),
        (rayjob("", "Initializing", startTime=T0), JobStatus.PENDING, "admitted; starting the Ray cluster"),
        (rayjob("PENDING", "Running", startTime=T0), JobStatus.PENDING, ""),
        (rayjob("RUNNING", "Running", startTime=T0), JobStatus.RUNNING, ""),
        (rayjob("SUCCEEDED", "Complete", startTime=T0, endTime=T1), JobStatus.SUCCEEDED, ""),
        (
            rayjob(
                "FAILED", "Complete", startTime=T0, endTime=T1, message="Job entrypoint command failed with exit code 1"
            ),
            JobStatus.FAILED,
            "Job entrypoint command failed with exit code 1",
        ),
        (rayjob("FAILED", "Failed", startTime=T0, endTime=T1, reason="AppFailed"), JobStatus.FAILED, "AppFailed"),
        (
            rayjob(
                "RUNNING",
                "Failed",
                startTime=T0,
                endTime=T1,
                reason="DeadlineExceeded",
                message="The RayJob has passed the activeDeadlineSeconds",
            ),
            JobStatus.FAILED,
            "The RayJob has passed the activeDeadlineSeconds",
        ),
        (
            rayjob("", "ValidationFailed", reason="ValidationFailed", message="invalid RayJob"),
            JobStatus.FAILED,
            "invalid RayJob",
        ),
        (rayjob("FAILED", "Retrying", startTime=T0), JobStatus.PENDING, "retrying on a new Ray cluster"),
        (rayjob("STOPPED", "Complete", startTime=T0, endTime=T1), JobStatus.STOPPED, ""),
        (rayjob("RUNNING", "Running", {STOP_ANNOTATION: "1740819930.000"}, startTime=T0), JobStatus.STOPPED, "stopped"),
        (rayjob("SUCCEEDED", "Complete", {STOP_ANNOTATION: "1"}, startTime=T0, endTime=T1), JobStatus.SUCCEEDED, ""),
    ],
)
def test_status_mapping(obj, status, message):
    info = job_info(obj)
    assert (info.status, info.message) == (status, message)
    assert info.start_time == (E0 if (obj.get("status") or {}).get("startTime") else None)
    assert info.end_time == (E1 if status.terminal and obj["status"].get("endTime") else None)


def test_ray_job_times_win_over_deployment_times():
    obj = rayjob(
        "SUCCEEDED",
        "Complete",
        startTime="2025-03-01T08:59:00Z",
        endTime="2025-03-01T09:06:00Z",
        rayJobInfo={"startTime": T0, "endTime": T1},
    )
    assert (job_info(obj).start_time, job_info(obj).end_time) == (E0, E1)


# -- the backend against fake APIs ---------------------------------------------------------------------
def backend_with(targets, custom=None, core=None) -> KubeRayBackend:
    return KubeRayBackend(
        targets, RayJobOptions(), custom_api=custom or FakeCustomObjects(), core_api=core or FakeCore()
    )


def test_submit_creates_one_rayjob_and_is_idempotent(targets, target):
    custom = FakeCustomObjects()
    backend = backend_with(targets, custom)
    request = launch(target.tenant)
    ref = backend.submit(request)
    assert ref == f"{target.namespace}/job-0123456789abcdef"
    assert backend.submit(request) == ref  # a retry after a crash adopts the RayJob
    assert [c[0] for c in custom.calls] == ["create", "create", "get"]
    assert custom.calls[0][1:5] == ("ray.io", "v1", target.namespace, "rayjobs")
    assert len(custom.objects) == 1
    assert backend.info(ref).status == JobStatus.PENDING


def test_submit_refuses_a_foreign_rayjob_and_unknown_tenants(targets, target):
    custom = FakeCustomObjects()
    backend = backend_with(targets, custom)
    backend.submit(launch(target.tenant))
    custom.objects[(target.namespace, "job-0123456789abcdef")]["metadata"]["labels"][JOB_ID_LABEL] = "job-other"
    with pytest.raises(BackendError, match="belongs to job"):
        backend.submit(launch(target.tenant))
    with pytest.raises(BackendError, match="no placement"):
        backend.submit(launch("not-a-tenant"))


def test_deleted_rayjob_is_job_not_found(targets, target):
    backend = backend_with(targets)
    with pytest.raises(JobNotFound):
        backend.info(f"{target.namespace}/job-gone")
    with pytest.raises(JobNotFound):
        backend.logs(f"{target.namespace}/job-gone")


@pytest.mark.parametrize("status", [403, 500])
def test_api_errors_are_backend_errors(targets, target, status):
    backend = backend_with(targets, FakeCustomObjects(fail=status))
    with pytest.raises(BackendError) as err:
        backend.info(f"{target.namespace}/job-x")
    assert not isinstance(err.value, JobNotFound)
    with pytest.raises(BackendError):
        backend.submit(launch(target.tenant))
    assert backend.healthy() is False


def test_logs_come_from_the_submitter_then_the_head(targets, target):
    custom = FakeCustomObjects()
    ref = backend_with(targets, custom).submit(launch(target.tenant))
    obj = custom.objects[tuple(ref.split("/"))]
    obj["status"] = {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running", "rayClusterName": "job-x-abcde"}
    core = FakeCore({"job-name=job-0123456789abcdef": "epoch 1 loss 0.3\n"})
    assert backend_with(targets, custom, core).logs(ref) == "epoch 1 loss 0.3\n"
    assert core.calls[-1][-1] == "ray-job-submitter"
    head = FakeCore({"ray.io/cluster=job-x-abcde,ray.io/node-type=head": "ray head log\n"})
    assert backend_with(targets, custom, head).logs(ref) == "ray head log\n"
    with pytest.raises(BackendError, match="no submitter or head pod"):
        backend_with(targets, custom, FakeCore()).logs(ref)


def test_stop_annotates_then_deletes_the_rayjob_and_keeps_nothing(targets, target):
    custom = FakeCustomObjects()
    backend = backend_with(targets, custom)
    ref = backend.submit(launch(target.tenant))
    custom.objects[tuple(ref.split("/"))]["status"] = {
        "jobStatus": "RUNNING",
        "jobDeploymentStatus": "Running",
        "startTime": T0,
    }
    backend.stop(ref)
    verbs = [c[0] for c in custom.calls]
    assert verbs.index("patch") < verbs.index("delete")  # annotated (reads STOPPED) while being deleted
    assert ("delete", "ray.io", "v1", target.namespace, "rayjobs", "job-0123456789abcdef", "Foreground") in custom.calls
    assert not custom.objects
    with pytest.raises(JobNotFound):  # no memory in the backend: the control plane's record says STOPPED
        backend.info(ref)
    with pytest.raises(JobNotFound):  # the control plane treats this as "already gone"
        backend.stop(ref)


def test_a_stopped_rayjob_reads_stopped_with_its_logs_on_every_replica(targets, target, stack, tmp_path):
    """Replica A stops a running job (its RayJob is deleted); replica B, with its own backend object
    on the same cluster and database, reports it STOPPED with the output A kept, and bills it once."""
    from operators.control_plane.auth import Principal
    from operators.control_plane.plane import ControlPlane
    from operators.control_plane.db.models import UsageJobRow
    from testbed.config import stack_file_for
    from testbed.jobs import JobSpec

    custom = FakeCustomObjects()
    core = FakeCore()
    settings = ControlPlaneSettings(
        stack_file=stack_file_for(REGION),
        database_url=f"sqlite:///{tmp_path / 'cp.db'}",
        backend="kuberay",
        mlflow_tracking_uri="http://mlflow",
        storage_path="s3://jobs",
    )
    replica_a, replica_b = (ControlPlane(settings, backend=backend_with(targets, custom, core)) for _ in range(2))
    tenant = Principal(subject=target.tenant, role="tenant")
    job = replica_a.dispatch(replica_a.admit(tenant, JobSpec(entrypoint="python train.py", cpus=1)))
    assert job.dispatched and job.backend_ref == f"{target.namespace}/{job.id}"
    core.names = {f"job-name={job.id}": "pod-0"}
    core.logs = {"pod-0": "epoch 1 loss 0.4\n"}
    custom.objects[tuple(job.backend_ref.split("/"))]["status"] = {
        "jobStatus": "RUNNING",
        "jobDeploymentStatus": "Running",
    }
    assert replica_b.visible_job(tenant, job.id).status == "RUNNING"
    stopped = replica_a.stop(tenant, job.id)
    assert not custom.objects
    for replica in (replica_b, replica_a):
        replica.dispatcher.sync_once()
        seen = replica.visible_job(tenant, job.id)
        assert (seen.status, seen.message) == ("STOPPED", "stopped") and seen.ended_at == stopped.ended_at
        assert replica.logs(tenant, job.id)[1:] == ("epoch 1 loss 0.4\n", True)
    with replica_b.store.session() as s:
        assert s.query(UsageJobRow).filter_by(job_id=job.id).count() == 1
    assert replica_b.ledger.snapshot()[target.tenant].jobs["STOPPED"] == 1
    for replica in (replica_a, replica_b):
        replica.shutdown()


def test_stop_that_cannot_delete_leaves_the_job_running(targets, target):
    class NoDelete(FakeCustomObjects):
        def delete_namespaced_custom_object(self, *args, **kwargs):
            raise ApiException(status=403, reason="Forbidden")

    custom = NoDelete()
    backend = backend_with(targets, custom)
    ref = backend.submit(launch(target.tenant))
    custom.objects[tuple(ref.split("/"))]["status"] = {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}
    with pytest.raises(BackendError, match="forbidden"):
        backend.stop(ref)
    assert backend.info(ref).status == JobStatus.RUNNING


# -- settings rendered by infra --------------------------------------------------------------------------
def test_infra_settings_build_a_kuberay_backend(stack, tmp_path, monkeypatch):
    rendered = json.loads(
        render_settings(
            stack,
            "postgresql+psycopg2://testbed:secret@postgres:5432/testbed",
            "http://mlflow.testbed-system.svc.cluster.local:5000",
            "s3://jobs",
            ray_image="registry.example/testbed-gyeongnam@sha256:" + "0" * 64,
        )
    )
    settings = ControlPlaneSettings.model_validate(rendered)
    assert settings.backend == "kuberay"
    # The pod's ConfigMap (/etc/testbed) and env, reproduced in a temporary folder.
    (tmp_path / f"Pulumi.{REGION}.yaml").write_text(render_stack_file(stack))
    (tmp_path / "placement.yaml").write_text(render_placement(stack))
    assert str(settings.placement_file) == "/etc/testbed/placement.yaml"
    local = ControlPlaneSettings.model_validate(
        {
            **rendered,
            "stack_file": str(tmp_path / f"Pulumi.{REGION}.yaml"),
            "placement_file": str(tmp_path / "placement.yaml"),
        }
    )
    custom = FakeCustomObjects()
    monkeypatch.setattr("operators.control_plane.backends.kuberay_backend.load_kube_apis", lambda: (custom, FakeCore()))
    backend = make_backend(local, stack)
    assert isinstance(backend, KubeRayBackend)
    assert set(backend.targets) == {t.id for t in stack.tenants}
    assert backend.capacity().gpus == settings.capacity_gpus
    assert backend.healthy() and custom.calls[0][0] == "list"
    assert backend.options.image == settings.ray_image


def test_kuberay_settings_need_a_placement(stack, tmp_path, monkeypatch):
    (tmp_path / "stack.yaml").write_text(render_stack_file(stack))
    settings = ControlPlaneSettings(
        stack_file=tmp_path / "stack.yaml",
        database_url="sqlite://",
        backend="kuberay",
        mlflow_tracking_uri="http://mlflow",
        storage_path="s3://jobs",
    )
    with pytest.raises(PlacementError, match="placement_file"):
        make_backend(settings, stack)
    with pytest.raises(PlacementError, match="cannot read"):
        make_backend(settings.model_copy(update={"placement_file": tmp_path / "missing.yaml"}), stack)


# -- a real cluster ----------------------------------------------------------------------------------------
def _cluster_or_skip() -> tuple[k8s.CustomObjectsApi, k8s.CoreV1Api]:
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("KUBECONFIG is not set: no Kubernetes cluster to run a RayJob on")
    from kubernetes import config

    try:
        config.load_kube_config()
        k8s.ApiextensionsV1Api().read_custom_resource_definition("rayjobs.ray.io")
    except ApiException as exc:
        pytest.skip(f"the cluster has no RayJob CRD (KubeRay not installed): {exc.status} {exc.reason}")
    except Exception as exc:
        pytest.skip(f"the cluster in KUBECONFIG is not reachable: {exc}")
    return k8s.CustomObjectsApi(), k8s.CoreV1Api()


def test_trivial_job_on_a_real_cluster():
    """Namespace and LocalQueue from TESTBED_KUBERAY_NAMESPACE / TESTBED_KUBERAY_QUEUE (default: 'default')."""
    custom, core = _cluster_or_skip()
    namespace = os.environ.get("TESTBED_KUBERAY_NAMESPACE", "default")
    queue = os.environ.get("TESTBED_KUBERAY_QUEUE", "default")
    group, version = KUEUE_API.split("/")
    try:
        local_queue = custom.get_namespaced_custom_object(group, version, namespace, "localqueues", queue)
    except ApiException as exc:
        pytest.skip(f"no Kueue LocalQueue {namespace}/{queue} to admit the RayJob: {exc.status} {exc.reason}")
    target = Target(
        tenant="it", namespace=namespace, local_queue=queue, cluster_queue=local_queue["spec"]["clusterQueue"]
    )
    backend = KubeRayBackend({"it": target}, RayJobOptions(ttl_seconds=60), custom_api=custom, core_api=core)
    job_id = "job-it-" + uuid.uuid4().hex[:8]
    request = LaunchRequest(
        job_id=job_id,
        tenant="it",
        region=REGION,
        entrypoint="python -c \"print('hello from testbed')\"",
        budget={"cpus": 1, "gpus": 0, "memory": 2 * GIB},
    )
    ref = backend.submit(request)
    try:
        deadline = time.time() + 600
        info = backend.info(ref)
        seen = {info.message}
        while not info.status.terminal and time.time() < deadline:
            time.sleep(2)
            info = backend.info(ref)
            seen.add(info.message)
        assert info.status == JobStatus.SUCCEEDED, info.message
        # Kueue's word, read from the RayJob's Workload, while the Ray cluster started.
        assert any(m.startswith(f"admitted by ClusterQueue {target.cluster_queue}") for m in seen), seen
        assert "hello from testbed" in backend.logs(ref)
        assert backend.info_many([ref])[ref] == info  # the batched read (two lists) says the same
    finally:
        try:
            backend.stop(ref)
        except JobNotFound:
            pass


def test_a_jobs_mlflow_login_is_a_secret_of_its_own_in_the_tenants_namespace(stack, targets, target):
    """The login goes into a per-job Secret owned by the RayJob (gone with it); the RayJob holds no password."""
    login = {"MLFLOW_TRACKING_USERNAME": target.tenant, "MLFLOW_TRACKING_PASSWORD": "p4ssw0rd-of-this-tenant-only"}
    request = launch(target.tenant).model_copy(update={"secret_env": login})
    custom, core = FakeCustomObjects(), FakeCore()
    backend = backend_with(targets, custom, core)
    ref = backend.submit(request)
    backend.submit(request)  # a retry after a crash replaces the Secret, adopts the RayJob
    rayjob = custom.objects[tuple(ref.split("/"))]
    assert login["MLFLOW_TRACKING_PASSWORD"] not in json.dumps(rayjob)
    secret = core.secrets[(target.namespace, "job-0123456789abcdef-login")]
    assert secret["stringData"] == login and secret["metadata"]["namespace"] == target.namespace
    [owner] = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "RayJob",
        rayjob["metadata"]["name"],
        rayjob["metadata"]["uid"],
    )
    assert [c[0] for c in core.calls] == ["create_secret", "create_secret", "replace_secret"]
    kubernetes_validate.validate(secret, schema_version(stack.cluster.kubernetes_version), strict=True)
