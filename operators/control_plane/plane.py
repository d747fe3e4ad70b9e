"""One region's control plane: the parts wired together, and the job reads a caller may make.

submit -> validate spec -> admission (quota, grant) -> job record persisted -> backend submit
-> status sync -> terminal state; logs and usage are kept after the backend forgets the job.
Admission lives in :mod:`.admission`, dispatch and status sync in :mod:`.dispatch`, token
issuing in :mod:`.tokens`, the backend's construction in :mod:`.backends.factory`.
"""

from __future__ import annotations

import logging

from operators.control_plane import audit
from operators.control_plane.admission import Admission, Admitted
from operators.control_plane.audit import AuditKind
from operators.control_plane.audit_config import record_money_changes
from operators.control_plane.audit_hooks import acting
from operators.control_plane.audit_hooks import install as install_audit_hooks
from operators.metering.burn import grant_notice, may_notice
from operators.statements.months import Statements
from operators.control_plane.auth import Principal, TokenCache
from operators.control_plane.backends.base import Backend, BackendError
from operators.control_plane.backends.factory import make_backend
from operators.control_plane.dispatch import Dispatcher
from operators.control_plane.errors import ServiceError, not_found
from operators.control_plane.idle import IdleWatch
from operators.control_plane.db.migrate import opening_prices
from operators.control_plane.mlflow_identities import MlflowIdentities
from operators.control_plane.db.models import DEFAULT_TOKEN_NAME, TokenRow
from operators.control_plane.db.money import MoneyLedger
from operators.control_plane.db.store import JobRow, Store
from operators.control_plane.tenant_storage import TenantStorage
from operators.control_plane.upload_sweeper import UploadSweeper
from operators.control_plane.tokens import TokenIssuer
from operators.control_plane.db.ledger import Ledger
from testbed.config import ConfigError, StackConfig, Tenant, load_stack_file, pricing_pool
from testbed.jobs import JobSpec, JobStatus
from testbed.money import Enforcement, Quote, won
from testbed.settings import ControlPlaneSettings
from testbed.clock import SYSTEM_CLOCK, Clock
from testbed.errors import ErrorCode


log = logging.getLogger("testbed.control_plane")


class ControlPlane:
    """The region's tenants, a job store, a backend; admission, dispatch and tokens around them."""

    def __init__(
        self,
        settings: ControlPlaneSettings,
        backend: Backend | None = None,
        store: Store | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.settings = settings
        self._stack_mtime = settings.stack_file.stat().st_mtime_ns if settings.stack_file.exists() else None
        self.stack: StackConfig = load_stack_file(settings.stack_file)
        self.tenants: dict[str, Tenant] = {t.id: t for t in self.stack.tenants}
        # A database migrated here opens its money ledger with today's usage at today's prices (0003_money).
        self.store = store or Store(settings.database_url, opening_prices=opening_prices(self.stack, settings.backend))
        self.backend = backend or make_backend(settings, self.stack)
        self.storage = TenantStorage(settings.storage_path)  # packages, data and job outputs of each tenant
        self.tokens = TokenCache(self.store)
        # The same ledger meters usage for /metrics and /v1/usage and for the grant check.
        self.clock = clock
        self.ledger = Ledger(self.store)
        self.ledger.install()
        # The money ledger: holds at admission, charges from the reconciler and at a job's end, releases.
        self.money = MoneyLedger(
            self.store, self.stack, lambda tenant: pricing_pool(self.stack, tenant, settings.backend)
        )
        self.money.install()
        install_audit_hooks(self.store)  # ledger entries and enforcement stops write their audit rows
        self.statements = Statements(self.stack, self.store, lambda: self.money.entries())
        self.admission = Admission(
            self.stack, self.store, self.backend, self.ledger, settings, self.storage, self.money
        )
        self.mlflow = MlflowIdentities(
            settings, self.store, self.tenants, clock
        )  # after the tokens: it derives from them
        self.dispatcher = Dispatcher(
            settings, self.tenants, self.store, self.backend, self.mlflow.job_env, self.money, clock=clock
        )
        self.idle = IdleWatch(settings, self.tenants, self.store, self.dispatcher)  # idle GPUs (Prometheus)
        self.issuer = TokenIssuer(
            self.store,
            self.tokens,
            self.tenants,
            self.stack.region.id,
            settings.credentials_dir,
            settings.operator_token_sha256,
            settings.monitoring_token_sha256,
            settings.program_office_token_sha256,
        )
        self.issuer.bootstrap()
        record_money_changes(self.store, self.stack)  # grant, price and budget changes since the last start
        self.mlflow.provision()  # best effort: retried at dispatch and at GET /v1/mlflow/credentials

    def start(self) -> None:
        """Start the background sync (status, logs, queued jobs; it also reloads an amended stack file), the idle-GPU
        watch and the sweep of abandoned uploads."""
        self.dispatcher.on_round.append(self.reload_if_changed)
        self.dispatcher.on_round.append(lambda: audit.drain(self.store))  # the audit inbox, into the chain
        self.dispatcher.start()
        self.idle.start()
        self._sweeper = UploadSweeper(self.storage, self.settings.upload_idle_seconds)
        self._sweeper.start()

    def reload_if_changed(self) -> list[str]:
        """Reload the stack file when it changed on disk (amended grants, new price rows); what was done."""
        try:
            mtime = self.settings.stack_file.stat().st_mtime_ns
        except OSError:
            return []
        if mtime == self._stack_mtime:
            return []
        self._stack_mtime = mtime
        return self.reload_stack()

    def reload_stack(self) -> list[str]:
        """Take the stack file as it is now; a bad file is refused (logged) and the running config kept.

        Grants and prices change at once for admission, charges and enforcement. Live holds are re-checked:
        an admit-if-fits tenant whose queued jobs' holds no longer fit its amended grant has them stopped
        (they never ran); running jobs are handled by their grant's mode (``stop`` stops them at exhaustion).
        Tenants and quotas are read at start only. Returns one line per action taken.
        """
        try:
            stack = load_stack_file(self.settings.stack_file)
        except ConfigError as exc:
            log.error("stack file not reloaded, keeping the running config: %s", exc)
            return [f"refused: {exc}"]
        if stack == self.stack:
            return []
        changed = [t.id for t in stack.tenants if t.id in self.tenants and t.grant != self.tenants[t.id].grant]
        self.stack = stack
        for tenant in stack.tenants:
            if tenant.id in self.tenants:
                self.tenants[tenant.id] = self.tenants[tenant.id].model_copy(update={"grant": tenant.grant})
        self.admission.stack = stack
        self.admission.tenants = dict(self.tenants)
        self.money.reload(stack.model_copy(update={"tenants": list(self.tenants.values())}))
        self.statements.stack = stack.model_copy(update={"tenants": list(self.tenants.values())})
        record_money_changes(self.store, self.statements.stack)  # audit rows: grant, price, budget changes
        actions = [f"grant of {tenant} amended" for tenant in changed]
        for tenant in changed:
            actions += self._recheck_holds(tenant)
        for action in actions:
            log.warning("stack reload: %s", action)
        return actions

    def _recheck_holds(self, tenant_id: str) -> list[str]:
        """Stop a tenant's queued jobs, newest first, while its holds exceed its amended grant (admit-if-fits)."""
        grant = self.tenants[tenant_id].grant
        if grant.krw is None or grant.enforcement != Enforcement.ADMIT_IF_FITS:
            return []
        actions = []
        queued = [row for row in self.store.list_jobs(tenant=tenant_id, status=JobStatus.PENDING) if not row.dispatched]
        for row in queued:  # newest first
            balance = self.money.balance(tenant_id)
            if balance.charged_krw + balance.held_krw <= grant.krw:
                break
            self.dispatcher.stop(
                row,
                reason=(
                    f"stopped: tenant {tenant_id!r}'s amended grant ({won(grant.krw)}) no longer covers this queued job's "
                    f"hold (charged {won(balance.charged_krw)}, held {won(balance.held_krw)})"
                ),
            )
            actions.append(f"queued job {row.id} of {tenant_id} stopped: its hold no longer fits the amended grant")
        return actions

    def shutdown(self) -> None:
        self.idle.stop()
        if getattr(self, "_sweeper", None) is not None:
            self._sweeper.stop()
        self.dispatcher.stop_sync()
        self.backend.close()
        try:
            audit.drain(self.store)  # the next start (any replica) would, too
        except Exception:
            log.exception("audit inbox not drained at shutdown")
        self.store.close()

    def admit(self, principal: Principal, spec: JobSpec) -> JobRow:
        """Admission, serialised with the tenant's other admissions and dispatches (any replica); the job's record."""
        return self.admit_with_balance(principal, spec).row

    def admit_with_balance(self, principal: Principal, spec: JobSpec) -> Admitted:
        """:meth:`admit`, with the job's hold and its company's balance as admission saw them.

        The admission's audit row (``job.admitted``) is written with the job record, in its transaction; a
        refusal (nothing else written) is audited in a transaction of its own, with its reason.
        """
        try:
            with acting(principal.actor):
                return self.admission.admit(principal, spec, locked=True)
        except ServiceError as exc:
            audit.record(
                self.store,
                AuditKind.JOB_REFUSED,
                tenant=principal.subject,
                actor=principal.actor,
                detail={"error": str(exc.code), "reason": exc.message[:1000], "status": exc.status_code},
            )
            raise

    def grant_notices(self, tenants: set[str]) -> dict[str, str]:
        """What each of these companies is told about its grant in its job messages (at 80% and 100% charged)."""
        known = [t for t in tenants if t in self.tenants]
        # one grouped query for what they were charged; the full balance (held jobs) only of those near their grant
        charged = self.money.charged(known) if known else {}
        near = [t for t in known if may_notice(charged.get(t, 0), self.tenants[t].grant.krw)]
        notices = {t: grant_notice(b) for t, b in self.money.balances(tenants=near).items()} if near else {}
        return {t: note for t, note in notices.items() if note}

    def quote(self, principal: Principal, spec: JobSpec) -> Quote:
        """The hold a job would take now and whether it fits; nothing is recorded."""
        return self.admission.quote(principal, spec)

    def dispatch(self, row: JobRow) -> JobRow:
        return self.dispatcher.dispatch(row)

    def rotate_token(self, principal: Principal, subject: str, name: str = DEFAULT_TOKEN_NAME) -> str:
        token = self.issuer.rotate(principal, subject, name)
        if name == DEFAULT_TOKEN_NAME:
            self.mlflow.rotated(subject)  # its MLflow password derives from the default token: set the new one
        return token

    def revoke_token(self, principal: Principal, subject: str, name: str) -> list[TokenRow]:
        rows = self.issuer.revoke(principal, subject, name)
        if name == DEFAULT_TOKEN_NAME:
            self.mlflow.rotated(subject)
        return rows

    # -- what a caller may read and do with its jobs ----------------------------------------
    def visible_job(self, principal: Principal, job_id: str) -> JobRow:
        """The job, refreshed, if the caller may see it; else 404 (never revealing that it exists)."""
        row = self.store.get_job(job_id)
        if row is None or not principal.can_see(row.tenant):
            raise not_found(f"job {job_id!r}")
        if row.dispatched and not row.terminal:
            row = self.dispatcher.refresh(row)
        return row

    def list_jobs(
        self,
        principal: Principal,
        status: JobStatus | None = None,
        limit: int | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[JobRow]:
        tenant = None if principal.is_operator else principal.subject
        return self.store.list_jobs(tenant=tenant, status=status, limit=limit, after=after)

    def logs(self, principal: Principal, job_id: str) -> tuple[JobRow, str, bool]:
        """(job, its output so far, whether that output is final)."""
        row = self.visible_job(principal, job_id)
        if row.terminal:
            return row, row.logs or "", True
        if not row.dispatched:
            return row, "", False
        try:
            return row, self.backend.logs(row.backend_ref or row.id), False
        except BackendError as exc:
            raise ServiceError(ErrorCode.BACKEND_UNAVAILABLE, str(exc)) from None

    def stop(self, principal: Principal, job_id: str) -> JobRow:
        with acting(principal.actor):
            return self.dispatcher.stop(self.visible_job(principal, job_id))
