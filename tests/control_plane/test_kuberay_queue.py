"""Cluster mode has one queue, Kueue's: jobs become suspended RayJobs at once, their messages carry Kueue's
reason (read from the RayJob's Workload), admission counts the pods Kueue counts, and a status sync round
costs a bounded number of API calls (lists per namespace, not a GET per job)."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
import yaml

from infra.addons.control_plane import render_placement
from operators.control_plane.auth import Principal
from operators.control_plane.backends import kuberay_backend
from operators.control_plane.backends.base import JobNotFound, Resources
from operators.control_plane.backends.rayjob_status import job_info
from operators.control_plane.backends.kuberay import (
    RayJobOptions,
    build_rayjob,
    kueue_pod_sets,
    resolve_targets,
    total_requests,
)
from operators.control_plane.backends.kuberay_backend import KubeRayBackend
from operators.control_plane.backends.kueue_workload import JOB_UID_LABEL, workload_message
from operators.control_plane.errors import ServiceError
from operators.control_plane.plane import ControlPlane
from testbed.config import load_region, stack_file_for
from testbed.jobs import JobSpec, JobStatus
from testbed.placement import Placement
from testbed.settings import ControlPlaneSettings
from testbed.versions import KUEUE_API
from tests.control_plane.kube_fakes import FakeCore, FakeCustomObjects
from tests.control_plane.test_kuberay_backend import GIB, REGION, launch
from tests.infra.crd_schema import upstream_catalog

TENANTS = ("changwon-precision", "sacheon-aero-parts", "jinju-defense-optics")
PENDING_MESSAGE = (
    "couldn't assign flavors to pod set workers: insufficient unused quota for cpu in flavor l4-pool, 2 more needed"
)


@pytest.fixture(scope="module")
def targets():
    stack = load_region(REGION)
    return resolve_targets(Placement.model_validate(yaml.safe_load(render_placement(stack))), stack)


# -- a Workload as Kueue v0.19.2 makes one for a RayJob ---------------------------------------------
def kueue_workload(rayjob: dict, *conditions: dict, cluster_queue: str | None = None) -> dict:
    """What ConstructWorkload (pkg/controller/jobframework/reconciler.go) builds: name ``rayjob-<name>-<hash>``
    (workload_names.go: sha1 of kind, group, name, uid), the job-uid label, the RayJob as controller owner, one
    pod set per head/worker group/submitter; plus the status conditions Kueue sets."""
    meta = rayjob["metadata"]
    digest = hashlib.sha1("\n".join(["RayJob", "ray.io", meta["name"], meta["uid"]]).encode()).hexdigest()[:5]
    status: dict = {
        "conditions": [{"observedGeneration": 1, "lastTransitionTime": "2026-03-01T09:00:00Z", **c} for c in conditions]
    }
    if cluster_queue:
        status["admission"] = {
            "clusterQueue": cluster_queue,
            "podSetAssignments": [
                {"name": p.name, "count": p.count, "flavors": {"cpu": "l4-pool", "memory": "l4-pool"}}
                for p in kueue_pod_sets(rayjob)
            ],
        }
    return {
        "apiVersion": KUEUE_API,
        "kind": "Workload",
        "metadata": {
            "name": f"rayjob-{meta['name']}-{digest}",
            "namespace": meta["namespace"],
            "labels": {JOB_UID_LABEL: meta["uid"]},
            "ownerReferences": [
                {
                    "apiVersion": "ray.io/v1",
                    "kind": "RayJob",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "queueName": rayjob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"],
            "podSets": [{"name": p.name, "count": p.count, "template": p.template} for p in kueue_pod_sets(rayjob)],
        },
        "status": status,
    }


def cond(kind: str, status: str, reason: str, message: str) -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message}


WAITING = cond("QuotaReserved", "False", "Pending", PENDING_MESSAGE)
RESERVED = cond("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue gyeongnam-x")
ADMITTED = cond("Admitted", "True", "Admitted", "The workload is admitted")
EVICTED = cond(
    "Evicted",
    "True",
    "Preempted",
    "Preempted to accommodate a workload (UID: u, JobUID: j) due to "
    "reclamation within the cohort; preemptor path: /gyeongnam/gyeongnam-y; preemptee path: /gyeongnam/x",
)
INADMISSIBLE = cond("QuotaReserved", "False", "Inadmissible", "LocalQueue changwon-precision doesn't exist")


def created_rayjob(target) -> dict:
    custom = FakeCustomObjects()
    return custom.create_namespaced_custom_object(
        "ray.io", "v1", target.namespace, "rayjobs", build_rayjob(launch(target.tenant), target, RayJobOptions())
    )


# -- what Kueue counts ------------------------------------------------------------------------------
@pytest.mark.parametrize("gpus", [0, 2])
def test_kueue_counts_the_head_and_the_submitter_and_admission_knows(targets, gpus):
    target = targets["changwon-precision"]
    budget = Resources(cpus=2.5, gpus=gpus, memory=6 * GIB)
    backend = KubeRayBackend(targets, RayJobOptions(), custom_api=FakeCustomObjects(), core_api=FakeCore())
    manifest = build_rayjob(launch(target.tenant, cpus=2.5, gpus=gpus, memory=6 * GIB), target, backend.options)
    pod_sets = kueue_pod_sets(manifest)
    assert [(p.name, p.count) for p in pod_sets] == [("head", 1), ("workers", 1), ("submitter", 1)]
    submitter = manifest["spec"]["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never" and submitter["containers"][0]["name"] == "ray-job-submitter"
    assert submitter["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    need = backend.pod_requests(budget)
    assert need.total == total_requests(pod_sets) == Resources(cpus=2.5 + 1 + 0.5, gpus=gpus, memory=9 * GIB)
    assert need.overhead == {
        "Ray head": Resources(cpus=1, gpus=0, memory=2 * GIB),
        "submitter": Resources(cpus=0.5, gpus=0, memory=GIB),
    }


def test_workloads_as_kueue_builds_them_validate_against_the_vendored_crd(targets):
    catalog = upstream_catalog()
    rayjob = created_rayjob(targets["changwon-precision"])
    for conditions in ([], [WAITING], [INADMISSIBLE], [RESERVED, ADMITTED], [EVICTED, WAITING]):
        admitted = any(c["type"] == "Admitted" for c in conditions)
        catalog.validate(kueue_workload(rayjob, *conditions, cluster_queue="gyeongnam-x" if admitted else None))


@pytest.mark.parametrize(
    "conditions,admitted_by,message",
    [
        ((), None, "queued in ClusterQueue gyeongnam-changwon-precision"),
        ((WAITING,), None, f"waiting for quota in ClusterQueue gyeongnam-changwon-precision: {PENDING_MESSAGE}"),
        (
            (INADMISSIBLE,),
            None,
            "not admissible in ClusterQueue gyeongnam-changwon-precision (Inadmissible): "
            "LocalQueue changwon-precision doesn't exist",
        ),
        ((RESERVED,), "gyeongnam-x", "quota reserved in ClusterQueue gyeongnam-x; waiting for its admission checks"),
        ((RESERVED, ADMITTED), "gyeongnam-x", "admitted by ClusterQueue gyeongnam-x"),
        ((EVICTED, WAITING), None, f"evicted by Kueue (Preempted): {EVICTED['message']}; queued again"),
    ],
)
def test_workload_conditions_become_the_jobs_message(targets, conditions, admitted_by, message):
    target = targets["changwon-precision"]
    workload = kueue_workload(created_rayjob(target), *conditions, cluster_queue=admitted_by)
    assert workload_message(workload, target.cluster_queue) == message


def test_kueue_reason_and_kuberay_progress_in_one_message(targets):
    target = targets["changwon-precision"]
    rayjob = created_rayjob(target)
    rayjob["status"] = {"jobDeploymentStatus": "Initializing", "startTime": "2026-03-01T09:00:00Z"}
    info = job_info(rayjob, kueue_workload(rayjob, RESERVED, ADMITTED, cluster_queue="gyeongnam-x"))
    assert (info.status, info.message) == (
        JobStatus.PENDING,
        "admitted by ClusterQueue gyeongnam-x; starting the Ray cluster",
    )
    rayjob["status"] = {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete", "message": "done"}
    assert job_info(rayjob, kueue_workload(rayjob, RESERVED, ADMITTED)).message == "done"  # the end: KubeRay's word


# -- the backend: one GET + one list for a job, two lists per namespace for all --------------------------
def submitted(targets, count: int) -> tuple[KubeRayBackend, FakeCustomObjects, list[str]]:
    custom = FakeCustomObjects()
    backend = KubeRayBackend(targets, RayJobOptions(), custom_api=custom, core_api=FakeCore())
    refs = [backend.submit(launch(TENANTS[i % len(TENANTS)], job_id=f"job-{i:016x}")) for i in range(count)]
    custom.calls.clear()
    return backend, custom, refs


def test_info_reads_the_workload_by_kueues_job_uid_label(targets):
    backend, custom, [ref] = submitted(targets, 1)
    rayjob = custom.objects[tuple(ref.split("/"))]
    other = created_rayjob(targets[TENANTS[0]])  # another RayJob's Workload in the same namespace
    for key, workload in (("mine", kueue_workload(rayjob, WAITING)), ("other", kueue_workload(other, EVICTED))):
        custom.workloads[(rayjob["metadata"]["namespace"], key)] = workload
    info = backend.info(ref)
    assert info.status == JobStatus.PENDING and info.message.startswith("waiting for quota in ClusterQueue")
    assert [c[0] for c in custom.calls] == ["get", "list"] and custom.calls[1][4] == "workloads"


def test_a_sync_round_costs_two_lists_per_namespace_not_calls_per_job(targets, monkeypatch):
    backend, custom, refs = submitted(targets, 50)
    for ref in refs[::2]:
        rayjob = custom.objects[tuple(ref.split("/"))]
        custom.workloads[(rayjob["metadata"]["namespace"], ref)] = kueue_workload(rayjob, WAITING)
    answers = backend.info_many(refs + ["tenant-changwon-precision/job-deleted"])
    assert len(custom.calls) == 2 * len(TENANTS)  # 50 jobs, 3 namespaces: 6 calls
    assert Counter(c[4] for c in custom.calls) == {"rayjobs": 3, "workloads": 3}
    assert all(answers[ref].message.startswith("waiting for quota") for ref in refs[::2])
    assert {answers[ref].message for ref in refs[1::2]} == {"created; waiting for KubeRay"}  # no Workload yet
    assert isinstance(answers["tenant-changwon-precision/job-deleted"], JobNotFound)
    monkeypatch.setattr(kuberay_backend, "LIST_PAGE", 10)  # 16-17 RayJobs and 8-9 Workloads per namespace
    custom.calls.clear()
    assert backend.info_many(refs) == {ref: answers[ref] for ref in refs}
    assert Counter(c[4] for c in custom.calls) == {"rayjobs": 2 * 3, "workloads": 3}


# -- the control plane in cluster mode: admission, one queue, the sync ------------------------------------
@pytest.fixture()
def cluster_plane(targets, tmp_path):
    custom = FakeCustomObjects()
    backend = KubeRayBackend(targets, RayJobOptions(), custom_api=custom, core_api=FakeCore())
    settings = ControlPlaneSettings(
        stack_file=stack_file_for(REGION),
        database_url=f"sqlite:///{tmp_path / 'cp.db'}",
        backend="kuberay",
        mlflow_tracking_uri="http://mlflow:5000",
        storage_path="s3://j",
    )
    plane = ControlPlane(settings, backend=backend)
    yield plane, custom
    plane.shutdown()


def test_admission_refuses_a_job_whose_pods_exceed_the_quota(cluster_plane):
    plane, custom = cluster_plane
    alice = Principal(subject="changwon-precision", role="tenant")  # quota: 8 CPUs, 64Gi
    with pytest.raises(ServiceError) as err:
        plane.admit(alice, JobSpec(entrypoint="python train.py", cpus=8, memory="16Gi"))
    assert err.value.code == "quota_exceeded"
    assert "the Ray head's 1 CPUs, 2Gi memory and the submitter's 0.5 CPUs, 1Gi memory" in err.value.message
    assert "ask for at most 6.5 CPUs and 61Gi memory" in err.value.message
    assert plane.admit(alice, JobSpec(entrypoint="python train.py", cpus=6.5, memory="61Gi")).status == "PENDING"


def test_every_admitted_job_becomes_a_rayjob_at_once_and_kueue_decides(cluster_plane):
    plane, custom = cluster_plane
    rows = [
        plane.dispatch(
            plane.admit(
                Principal(subject=TENANTS[i % 3], role="tenant"),
                JobSpec(entrypoint="python train.py", cpus=4, memory="8Gi"),
            )
        )
        for i in range(50)
    ]  # far beyond what the tenants' quotas run at once: no second queue holds them
    assert all(row.dispatched for row in rows) and len(custom.objects) == 50
    for row in rows[:10]:
        rayjob = custom.objects[tuple(row.backend_ref.split("/"))]
        custom.workloads[(rayjob["metadata"]["namespace"], row.id)] = kueue_workload(rayjob, WAITING)
    custom.calls.clear()
    assert plane.dispatcher.sync_once() is False  # Ray's start times come with the RayJobs: no 50 ms watch
    assert len(custom.calls) == 2 * len(TENANTS)
    assert plane.store.get_job(rows[0].id).message.startswith(
        f"waiting for quota in ClusterQueue gyeongnam-{rows[0].tenant}: couldn't assign flavors"
    )
    custom.calls.clear()
    plane.dispatcher.sync_once(starting_only=True)  # the pending-only round is batched the same way
    assert len(custom.calls) == 2 * len(TENANTS)
