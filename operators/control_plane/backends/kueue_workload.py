"""Cluster mode, pure part: a RayJob's Kueue Workload, and Kueue's reason for where the job stands.

Facts from Kueue v0.19.2 (kubernetes-sigs/kueue, tag v0.19.2):

- One Workload per RayJob, in the RayJob's namespace, named ``rayjob-<name>-<hash>``
  (pkg/controller/jobframework/workload_names.go); ``ConstructWorkload`` in
  pkg/controller/jobframework/reconciler.go labels it ``kueue.x-k8s.io/job-uid: <RayJob uid>``
  (pkg/controller/constants/constants.go ``JobUIDLabel``) and makes the RayJob its controller
  owner (``ctrl.SetControllerReference``). Kueue copies none of the RayJob's own labels unless
  configured to (``labelKeysToCopy``), so a Workload is matched to its RayJob by that uid.
- Conditions (apis/kueue/v1beta2/workload_types.go): ``QuotaReserved`` (True: "Quota reserved in
  ClusterQueue <cq>", pkg/workload/workload.go ``SetQuotaReservation``; False while queued, reason
  ``Pending`` with the flavor assigner's "couldn't assign flavors to pod set ...: insufficient unused
  quota ..." from pkg/scheduler/scheduler.go, or ``Inadmissible`` when a queue is missing or stopped,
  pkg/controller/core/workload_controller.go; the granular reasons ``WaitingForQuota`` ... only with
  the UnadmittedWorkloadsObservability gate, off by default in 0.19), ``Admitted`` (True: "The
  workload is admitted", pkg/workload/admissionchecks.go), ``Evicted`` (reasons ``Preempted``,
  ``PodsReadyTimeout``, ``AdmissionCheck``, ``ClusterQueueStopped``, ``Deactivated`` ...; reset to
  False when quota is reserved again), ``Finished``.
"""

from __future__ import annotations

from typing import Iterable

from testbed.versions import KUEUE_API

WORKLOAD_GROUP, WORKLOAD_VERSION = KUEUE_API.split("/")
WORKLOAD_PLURAL = "workloads"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
# QuotaReserved=False reasons that mean "in the queue, waiting for quota" (the rest: it cannot be admitted as is).
WAITING_REASONS = {
    "Pending",
    "WaitingForQuota",
    "PendingEvaluation",
    "WaitingForPreemptedWorkloads",
    "WaitingForPodsReady",
}


def owner_uid(workload: dict) -> str | None:
    """The uid of the RayJob a Workload belongs to: its controller owner reference, else its job-uid label."""
    meta = workload.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "RayJob" and ref.get("controller"):
            return ref.get("uid")
    return (meta.get("labels") or {}).get(JOB_UID_LABEL)


def workloads_by_owner(workloads: Iterable[dict]) -> dict[str, dict]:
    """RayJob uid -> its Workload (the newest, should a RayJob ever have had more than one)."""
    newest: dict[str, dict] = {}
    for workload in workloads:
        uid = owner_uid(workload)
        if uid and _created(workload) >= _created(newest.get(uid, {})):
            newest[uid] = workload
    return newest


def _created(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("creationTimestamp") or ""  # RFC 3339 UTC: sorts as text


def condition(workload: dict, kind: str) -> dict | None:
    for cond in (workload.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def _is_true(cond: dict | None) -> bool:
    return cond is not None and cond.get("status") == "True"


def admitted(workload: dict) -> bool:
    return _is_true(condition(workload, "Admitted"))


def workload_message(workload: dict, cluster_queue: str) -> str:
    """Kueue's word on a Workload that has not finished: evicted, admitted, or why it still waits."""
    queue = ((workload.get("status") or {}).get("admission") or {}).get("clusterQueue") or cluster_queue
    evicted = condition(workload, "Evicted")
    if _is_true(evicted):
        return f"evicted by Kueue ({evicted.get('reason')}): {evicted.get('message')}; queued again"
    if admitted(workload):
        return f"admitted by ClusterQueue {queue}"
    reserved = condition(workload, "QuotaReserved")
    if _is_true(reserved):
        return f"quota reserved in ClusterQueue {queue}; waiting for its admission checks"
    if reserved is None:
        return f"queued in ClusterQueue {queue}"
    reason, detail = reserved.get("reason") or "", reserved.get("message") or ""
    if reason in WAITING_REASONS:
        return f"waiting for quota in ClusterQueue {queue}: {detail}"
    return f"not admissible in ClusterQueue {queue} ({reason}): {detail}"
