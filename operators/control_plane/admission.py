"""Admission: validate a job spec, refuse what can never run, persist the rest as a queued record.

A job is refused (403, nothing recorded) when it could never fit its tenant's quota or the
largest node (CPUs, GPUs, memory), when its max run time is above the tenant's cap, outside the
tenant's grant period, when its hold (its maximum cost) does not fit the grant's balance under the
grant's enforcement mode (:mod:`.money`), or when the tenant already has its cap of queued jobs.
An admitted job's hold is written in the same transaction as its record.
Whether it fits the tenant's *current* free quota is the dispatcher's question, not admission's; admission only
notes the answer it can read for free (:mod:`.room`): a job there is no room for now is stored saying why and
left to the sync, which hands the queue on, oldest first, as the tenant's jobs end.
"""

from __future__ import annotations

import time
import uuid
from contextlib import nullcontext
from typing import NamedTuple

from operators.control_plane.admission_writes import write_admission
from operators.control_plane.auth import Principal
from operators.control_plane.backends.base import Backend, Resources
from operators.control_plane.errors import ServiceError
from operators.control_plane.db.money import Balance, MoneyLedger
from operators.control_plane.db.pricing import PRICED_KEY, Hold, JobShape
from operators.control_plane.db.store import JobRow, Store
from operators.control_plane.room import no_room
from operators.control_plane.tenant_storage import TenantStorage
from operators.control_plane.db.ledger import Ledger
from testbed import jobs as J
from testbed.config import StackConfig, Tenant
from testbed.quantities import format_memory
from testbed.jobs import JobSpec, JobStatus
from testbed.limits import DEFAULT_COMMAND_MAX_RUNTIME_SECONDS
from testbed.money import Enforcement, Quote, format_duration, won
from testbed.settings import ControlPlaneSettings
from operators.control_plane.data_params import resolve_data_params
from testbed.storage import package_sha256
from testbed.templates import TemplateError, get_template
from testbed.errors import ErrorCode


QUEUED = "queued"  # an admitted job's message until dispatch tries it


class Admitted(NamedTuple):
    """An admitted job, its hold in won, and its company's balance with that hold (when admission read the balance:
    the job is priced), all as of the admission's transaction: what the job's view needs, with no read of its own."""

    row: JobRow
    hold_krw: int
    balance: Balance | None


class Admission:
    """One region's admission: its tenants' quotas and grants, the backend's capacity, the ledger."""

    def __init__(
        self,
        stack: StackConfig,
        store: Store,
        backend: Backend,
        ledger: Ledger,
        settings: ControlPlaneSettings,
        storage: TenantStorage,
        money: MoneyLedger | None = None,
    ):
        self.settings = settings
        self.money = money
        self.storage = storage
        self.stack = stack
        self.tenants: dict[str, Tenant] = {t.id: t for t in stack.tenants}
        self.store = store
        self.backend = backend
        self.ledger = ledger

    def admit(self, principal: Principal, spec: JobSpec, now: float | None = None, locked: bool = False) -> Admitted:
        """Refuse what can never run or does not fit the grant; persist the rest as a queued job record and its hold.

        ``locked``: run the part that reads the balance and writes in the tenant's admission section
        (:meth:`Store.tenant_section`; the checks of the spec alone and the hold's price run before it).
        """
        now = time.time() if now is None else now
        tenant, entrypoint, params, kind, max_runtime = self._validate(principal, spec)
        shape = self._shape(spec, max_runtime)
        priced = self.money.hold_for(tenant, shape, now) if self.money is not None else None
        with self.store.tenant_section(tenant.id) if locked else nullcontext():
            return self._admit(tenant, spec, entrypoint, params, kind, shape, now, priced)

    def _admit(
        self,
        tenant: Tenant,
        spec: JobSpec,
        entrypoint: str,
        params: dict,
        kind: str,
        shape: JobShape,
        now: float,
        priced: Hold | None,
    ) -> Admitted:
        balance = None
        if self.money is not None and priced is not None and priced.priced:
            balance, jobs = self.money.balance_and_jobs(tenant.id)  # one read for all the checks
        else:
            jobs = self.store.tenant_jobs(tenant.id)
        max_runtime = shape.max_runtime_seconds
        quote, hold = self._price(tenant, spec, max_runtime, now, priced, balance)
        if not quote.fits:
            raise ServiceError(ErrorCode(quote.refusal or ErrorCode.GRANT_INSUFFICIENT), quote.reason)
        self._check_queue(tenant, jobs.queued)
        job_id = "job-" + uuid.uuid4().hex[:16]
        row = JobRow(
            id=job_id,
            tenant=tenant.id,
            region=self.stack.region.id,
            name=spec.experiment_suffix,
            experiment=J.experiment_name(tenant.id, spec.experiment_suffix),
            status=JobStatus.PENDING.value,
            entrypoint=entrypoint,
            template=spec.template,
            # the command is stored once, in ``entrypoint``
            spec={
                **spec.model_dump(mode="json", exclude={"entrypoint"}),
                "params": params,
                "kind": kind,
                "max_runtime_seconds": max_runtime,
                PRICED_KEY: shape.priced(),
            },
            cpus=spec.cpus,
            gpus=spec.gpus,
            gpu_model=self.stack.pool_for(tenant).gpu_model if spec.gpus else None,
            memory_bytes=spec.memory,
            submitted_at=now,
            dispatched=False,
        )
        # No room in the tenant's quota now: the job waits, saying why, for the sync to hand it on as jobs end
        # (dispatch does not look at it again before). A backend that queues jobs itself (Kueue) gets it at once.
        row.message = (None if self.backend.queues_jobs else no_room(tenant, jobs.held, row)) or QUEUED
        if self.money is None or hold is None or not hold.priced:
            write_admission(self.store, row, None)
            return Admitted(row, 0, None)
        write_admission(self.store, row, self.money.hold_row(job_id, tenant.id, hold, shape, now))  # one transaction
        return Admitted(row, hold.krw, self.money.holding(balance, hold) if balance is not None else None)

    def quote(self, principal: Principal, spec: JobSpec, now: float | None = None) -> Quote:
        """What admitting ``spec`` now would hold, and whether it fits; nothing is recorded."""
        now = time.time() if now is None else now
        tenant, _entrypoint, _params, _kind, max_runtime = self._validate(principal, spec)
        return self._price(tenant, spec, max_runtime, now)[0]

    def _validate(self, principal: Principal, spec: JobSpec) -> tuple[Tenant, str, dict, str, int]:
        """(tenant, command, params, kind, max run time) of a spec that can run at all; else a ServiceError."""
        if principal.is_operator:
            raise ServiceError(ErrorCode.FORBIDDEN, "the operator token cannot submit jobs; use a tenant token")
        tenant = self.tenants.get(principal.subject)
        if tenant is None:
            raise ServiceError(
                ErrorCode.FORBIDDEN, f"tenant {principal.subject!r} is not in region {self.stack.region.id!r}"
            )
        entrypoint, params, kind = resolve_entrypoint(spec)
        if spec.code_package is not None:
            self._check_package(tenant, spec.code_package)
        if spec.template is not None:
            entrypoint = self._locate_data(tenant, spec.template, params) or entrypoint
        self._check_quota(tenant, spec)
        return tenant, entrypoint, params, kind, self._max_runtime(tenant, spec)

    def _max_runtime(self, tenant: Tenant, spec: JobSpec) -> int:
        """The spec's max run time, else its template's or the command default, within the tenant's cap."""
        cap = tenant.quota.max_runtime_seconds
        if spec.max_runtime_seconds is not None:
            if spec.max_runtime_seconds > cap:
                raise ServiceError(
                    ErrorCode.MAX_RUNTIME_EXCEEDED,
                    (
                        f"body.max_runtime_seconds: {spec.max_runtime_seconds} ({format_duration(spec.max_runtime_seconds)}) "
                        f"is above tenant {tenant.id!r}'s cap of {cap} ({format_duration(cap)})"
                    ),
                )
            return spec.max_runtime_seconds
        default = (
            get_template(spec.template).max_runtime_seconds
            if spec.template is not None
            else DEFAULT_COMMAND_MAX_RUNTIME_SECONDS
        )
        return min(default, cap)

    def _shape(self, spec: JobSpec, max_runtime: int) -> JobShape:
        """What the job is priced by: all its pods as the backend counts them (in a cluster the Ray head and the
        submitter too, what Kueue admits; locally its spec), for at most its max run time."""
        total = self.backend.pod_requests(Resources(cpus=spec.cpus, gpus=spec.gpus, memory=spec.memory)).total
        return JobShape(cpus=total.cpus, gpus=total.gpus, memory_bytes=total.memory, max_runtime_seconds=max_runtime)

    def _price(
        self,
        tenant: Tenant,
        spec: JobSpec,
        max_runtime: int,
        now: float,
        hold: Hold | None = None,
        balance: Balance | None = None,
    ) -> tuple[Quote, Hold | None]:
        """The job's hold (``hold``: already priced) and whether the grant admits it now (with the numbers if not);
        ``balance``: the tenant's, already read."""
        grant = tenant.grant
        if hold is None and self.money is not None:
            hold = self.money.hold_for(tenant, self._shape(spec, max_runtime), now)
        priced = hold is not None and hold.priced
        money = priced and grant.krw is not None
        quote = Quote(
            hold_krw=hold.krw if hold is not None else 0,
            max_runtime_seconds=max_runtime,
            price_id=hold.price_id if hold is not None else "",
            pool=hold.pool if hold is not None else "",
            balance_krw=None,
            fits=True,
        )
        if money or spec.gpus:
            ends = [grant.end_timestamp] + ([self.stack.budget.end_timestamp] if self.stack.budget else [])
            if not grant.start_timestamp <= now < min(ends):
                what = "jobs" if money else "GPU jobs"
                return quote.refuse(
                    ErrorCode.GRANT_INACTIVE,
                    f"tenant {tenant.id!r}'s grant runs {grant.start} to {grant.end} "
                    f"(Asia/Seoul days): {what} are refused outside it",
                ), hold
        if not priced:
            if spec.gpus:
                self._check_gpu_hours_metered(tenant, now)
            return quote, hold
        assert self.money is not None and hold is not None
        balance = balance if balance is not None else self.money.balance(tenant.id)
        quote = quote.model_copy(update={"balance_krw": balance.remaining_krw})
        mode = grant.enforcement
        if money and grant.krw is not None:
            numbers = (
                f"balance {won(balance.remaining_krw or 0)} = grant {won(grant.krw)} - charged "
                f"{won(balance.charged_krw)} - held {won(balance.held_krw)}"
            )
            if mode == Enforcement.ADMIT_IF_FITS and hold.krw > (balance.remaining_krw or 0):
                return quote.refuse(
                    ErrorCode.GRANT_INSUFFICIENT,
                    (
                        f"job's hold {won(hold.krw)} ({format_duration(max_runtime)} x {spec.cpus:g} CPUs, {spec.gpus} GPUs, "
                        f"{format_memory(spec.memory)} at {hold.price_id}) does not fit tenant {tenant.id!r}'s {numbers}; "
                        "ask for less (--max-runtime, resources) or wait for running jobs to end"
                    ),
                ), hold
            if mode == Enforcement.STOP and (balance.remaining_krw or 0) <= 0:
                return quote.refuse(
                    ErrorCode.GRANT_EXHAUSTED, f"tenant {tenant.id!r}'s grant is used up: {numbers}"
                ), hold
        if grant.gpu_seconds is not None and spec.gpus and mode != Enforcement.WARN:
            cap = grant.gpu_seconds
            used, held = balance.charged_gpu_seconds, balance.held_gpu_seconds  # type: ignore[attr-defined]
            hours = f"charged {used / 3600:.2f} + held {held / 3600:.2f} of {grant.gpu_hours:g} granted GPU-hours"
            if used >= cap:
                return quote.refuse(ErrorCode.GRANT_EXHAUSTED, f"tenant {tenant.id!r} has {hours}"), hold
            if mode == Enforcement.ADMIT_IF_FITS and used + held + hold.gpu_seconds > cap:
                return quote.refuse(
                    ErrorCode.GRANT_INSUFFICIENT,
                    (
                        f"job's {hold.gpu_seconds / 3600:.2f} GPU-hours ({spec.gpus} GPUs x {format_duration(max_runtime)}) "
                        f"do not fit tenant {tenant.id!r}'s {hours}"
                    ),
                ), hold
        return quote, hold

    def _check_package(self, tenant: Tenant, ref: str) -> None:
        """The job's code package is in the tenant's own storage (another tenant's digest is not)."""
        if self.storage.package(tenant.id, package_sha256(ref)) is None:
            raise ServiceError(
                ErrorCode.NOT_FOUND,
                f"body.code_package: no code package {ref} in tenant {tenant.id!r}'s "
                "storage; upload it first (`testbed submit --working-dir DIR` does)",
            )

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
                ErrorCode.QUOTA_EXCEEDED,
                f"job asks for {', '.join(problems)}: it can never fit tenant {tenant.id!r}'s quota",
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
            raise ServiceError(
                ErrorCode.CAPACITY_EXCEEDED, f"job asks for {', '.join(beyond)}: no node can ever run it"
            )

    def _check_queue(self, tenant: Tenant, queued: int) -> None:
        """Back-pressure: a tenant may park only so many jobs that wait (``queued`` of them do)."""
        cap = self.settings.max_queued_jobs_per_tenant
        if queued >= cap:
            raise ServiceError(
                ErrorCode.QUEUE_FULL,
                f"tenant {tenant.id!r} already has {queued} queued jobs "
                f"(max_queued_jobs_per_tenant: {cap}); wait for some to start or stop them",
            )

    def _check_pod_requests(self, tenant: Tenant, spec: JobSpec) -> None:
        """The job's pods in all (a RayJob's head and submitter too: what Kueue counts) must fit the quota."""
        budget = Resources(cpus=spec.cpus, gpus=spec.gpus, memory=spec.memory)
        need = self.backend.pod_requests(budget)
        quota = tenant.quota
        if not need.overhead or need.total.fits_in(Resources(cpus=quota.cpus, gpus=quota.gpus, memory=quota.memory)):
            return
        extra = " and ".join(f"the {part}'s {amount}" for part, amount in need.overhead.items())
        most = Resources(
            cpus=max(quota.cpus - (need.total.cpus - budget.cpus), 0),
            gpus=quota.gpus,
            memory=max(quota.memory - (need.total.memory - budget.memory), 0),
        )
        raise ServiceError(
            ErrorCode.QUOTA_EXCEEDED,
            (
                f"job asks for {budget}; with {extra} its pods request {need.total}, more than tenant {tenant.id!r}'s "
                f"quota ({quota.cpus:g} CPUs, {format_memory(quota.memory)} memory), so the cluster's queue would never "
                f"admit it: ask for at most {most.cpus:g} CPUs and {format_memory(most.memory)} memory"
            ),
        )

    def _check_gpu_hours_metered(self, tenant: Tenant, now: float) -> None:
        """Without prices: GPU jobs are refused once the metered GPU-hours reach the grant's."""
        grant = tenant.grant
        if grant.gpu_seconds is None:
            return
        meter = self.ledger.snapshot(now=now, tenants=[tenant.id]).get(tenant.id)
        used = meter.gpu_seconds_total if meter is not None else 0.0
        if used >= grant.gpu_seconds:
            raise ServiceError(
                ErrorCode.GRANT_EXHAUSTED,
                f"tenant {tenant.id!r} has used {used / 3600:.1f} of {grant.gpu_hours:g} granted GPU-hours",
            )


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
