"""Admission: validate a job spec, refuse what can never run, persist the rest as a queued record.

A job is refused (403, nothing recorded) when it could never fit its tenant's quota or the
largest node (CPUs, GPUs, memory), when it asks for GPUs outside the tenant's grant period or
beyond the GPU-hours granted, or when the tenant already has its cap of queued jobs.
Whether it fits the tenant's *current* free quota is the dispatcher's question, not admission's.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import func, select

from operators.control_plane.auth import Principal
from operators.control_plane.backends.base import Backend, Resources
from operators.control_plane.errors import ServiceError
from operators.control_plane.db.store import JobRow, Store
from operators.control_plane.tenant_storage import TenantStorage
from operators.control_plane.db.ledger import Ledger
from testbed import jobs as J
from testbed.config import StackConfig, Tenant
from testbed.quantities import format_memory
from testbed.jobs import TERMINAL_STATUSES, JobSpec, JobStatus
from testbed.settings import ControlPlaneSettings
from operators.control_plane.data_params import resolve_data_params
from testbed.storage import package_sha256
from testbed.templates import TemplateError, get_template
from testbed.errors import ErrorCode


class Admission:
    """One region's admission: its tenants' quotas and grants, the backend's capacity, the ledger."""

    def __init__(self, stack: StackConfig, store: Store, backend: Backend, ledger: Ledger,
                 settings: ControlPlaneSettings, storage: TenantStorage):
        self.settings = settings
        self.storage = storage
        self.stack = stack
        self.tenants: dict[str, Tenant] = {t.id: t for t in stack.tenants}
        self.store = store
        self.backend = backend
        self.ledger = ledger

    def admit(self, principal: Principal, spec: JobSpec) -> JobRow:
        """Refuse what can never run; persist the rest as a queued job record (nothing else)."""
        if principal.is_operator:
            raise ServiceError(ErrorCode.FORBIDDEN, "the operator token cannot submit jobs; use a tenant token")
        tenant = self.tenants.get(principal.subject)
        if tenant is None:
            raise ServiceError(ErrorCode.FORBIDDEN, f"tenant {principal.subject!r} is not in region {self.stack.region.id!r}")
        entrypoint, params, kind = resolve_entrypoint(spec)
        if spec.code_package is not None:
            self._check_package(tenant, spec.code_package)
        if spec.template is not None:
            entrypoint = self._locate_data(tenant, spec.template, params) or entrypoint
        self._check_quota(tenant, spec)
        gpu_model = self.stack.pool_for(tenant).gpu_model if spec.gpus else None
        if spec.gpus:
            self._check_grant(tenant)
        self._check_queue(tenant)
        job_id = "job-" + uuid.uuid4().hex[:16]
        return self.store.add_job(JobRow(
            id=job_id,
            tenant=tenant.id,
            region=self.stack.region.id,
            name=spec.experiment_suffix,
            experiment=J.experiment_name(tenant.id, spec.experiment_suffix),
            status=JobStatus.PENDING.value,
            entrypoint=entrypoint,
            template=spec.template,
            # the command is stored once, in ``entrypoint``
            spec={**spec.model_dump(mode="json", exclude={"entrypoint"}), "params": params, "kind": kind},
            cpus=spec.cpus,
            gpus=spec.gpus,
            gpu_model=gpu_model,
            memory_bytes=spec.memory,
            submitted_at=time.time(),
            dispatched=False,
            message="queued",
        ))

    def _check_package(self, tenant: Tenant, ref: str) -> None:
        """The job's code package is in the tenant's own storage (another tenant's digest is not)."""
        if self.storage.package(tenant.id, package_sha256(ref)) is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"body.code_package: no code package {ref} in tenant {tenant.id!r}'s "
                                                 "storage; upload it first (`testbed submit --working-dir DIR` does)")

    def _locate_data(self, tenant: Tenant, template: str, params: dict) -> str | None:
        """The template's command with each ``data`` param located in the tenant's own storage (None: no such
        param given); 422/404 naming the param otherwise (:mod:`.data_params`)."""
        located = resolve_data_params(get_template(template), params, tenant.id, self.storage)
        return get_template(template).command({**params, **located}) if located else None

    def _check_quota(self, tenant: Tenant, spec: JobSpec) -> None:
        quota = tenant.quota
        problems = []
        if spec.cpus > quota.cpus:
            problems.append(f"{spec.cpus:g} CPUs (quota {quota.cpus})")
        if spec.gpus > quota.gpus:
            problems.append(f"{spec.gpus} GPUs (quota {quota.gpus})")
        if spec.memory > quota.memory:
            problems.append(f"{format_memory(spec.memory)} memory (quota {format_memory(quota.memory)})")
        if problems:
            raise ServiceError(
                ErrorCode.QUOTA_EXCEEDED, f"job asks for {', '.join(problems)}: it can never fit tenant {tenant.id!r}'s quota"
            )
        self._check_pod_requests(tenant, spec)
        capacity = self.backend.capacity()
        beyond = []
        if capacity.cpus is not None and spec.cpus > capacity.cpus:
            beyond.append(f"{spec.cpus:g} CPUs (largest node: {capacity.cpus:g})")
        if capacity.gpus is not None and spec.gpus > capacity.gpus:
            beyond.append(f"{spec.gpus} GPUs (largest node: {capacity.gpus:g})")
        if capacity.memory is not None and spec.memory > capacity.memory:
            beyond.append(f"{format_memory(spec.memory)} memory (largest node: {format_memory(capacity.memory)})")
        if beyond:
            raise ServiceError(ErrorCode.CAPACITY_EXCEEDED, f"job asks for {', '.join(beyond)}: no node can ever run it")

    def _check_queue(self, tenant: Tenant) -> None:
        """Back-pressure: a tenant may park only so many jobs that wait for room."""
        cap = self.settings.max_queued_jobs_per_tenant
        terminal = [status.value for status in TERMINAL_STATUSES]
        query = select(func.count(JobRow.id)).where(
            JobRow.tenant == tenant.id, JobRow.dispatched.is_(False), JobRow.status.not_in(terminal))
        with self.store.session() as s:
            queued = s.execute(query).scalar_one()
        if queued >= cap:
            raise ServiceError(ErrorCode.QUEUE_FULL, f"tenant {tenant.id!r} already has {queued} queued jobs "
                               f"(max_queued_jobs_per_tenant: {cap}); wait for some to start or stop them")

    def _check_pod_requests(self, tenant: Tenant, spec: JobSpec) -> None:
        """The job's pods in all (a RayJob's head and submitter too: what Kueue counts) must fit the quota."""
        budget = Resources(cpus=spec.cpus, gpus=spec.gpus, memory=spec.memory)
        need = self.backend.pod_requests(budget)
        quota = tenant.quota
        if not need.overhead or need.total.fits_in(Resources(cpus=quota.cpus, gpus=quota.gpus, memory=quota.memory)):
            return
        extra = " and ".join(f"the {part}'s {amount}" for part, amount in need.overhead.items())
        most = Resources(cpus=max(quota.cpus - (need.total.cpus - budget.cpus), 0), gpus=quota.gpus,
                         memory=max(quota.memory - (need.total.memory - budget.memory), 0))
        raise ServiceError(ErrorCode.QUOTA_EXCEEDED, (
            f"job asks for {budget}; with {extra} its pods request {need.total}, more than tenant {tenant.id!r}'s "
            f"quota ({quota.cpus:g} CPUs, {format_memory(quota.memory)} memory), so the cluster's queue would never "
            f"admit it: ask for at most {most.cpus:g} CPUs and {format_memory(most.memory)} memory"))

    def _check_grant(self, tenant: Tenant) -> None:
        now = time.time()
        grant = tenant.grant
        if not grant.start_timestamp <= now < grant.end_timestamp:
            raise ServiceError(ErrorCode.GRANT_INACTIVE, f"tenant {tenant.id!r}'s grant runs {grant.start} to {grant.end}: GPU jobs are refused outside it")
        meter = self.ledger.snapshot(now=now, tenants=[tenant.id]).get(tenant.id)
        used = meter.gpu_seconds_total if meter is not None else 0.0
        if used >= grant.gpu_seconds:
            raise ServiceError(ErrorCode.GRANT_EXHAUSTED, f"tenant {tenant.id!r} has used {used / 3600:.1f} of {grant.gpu_hours:g} granted GPU-hours")


def resolve_entrypoint(spec: JobSpec) -> tuple[str, dict, str]:
    """(command, resolved template params, kind) of a spec; 422 for a bad template or param."""
    if spec.template is None:
        return spec.entrypoint or "", {}, "command"
    try:
        template = get_template(spec.template)
        params = template.resolve(spec.params, strict=True)
    except TemplateError as exc:
        raise ServiceError(ErrorCode.INVALID_SPEC, str(exc)) from None
    return template.command(params), params, template.kind
