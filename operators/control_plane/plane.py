"""One region's control plane: the parts wired together, and the job reads a caller may make.

submit -> validate spec -> admission (quota, grant) -> job record persisted -> backend submit
-> status sync -> terminal state; logs and usage are kept after the backend forgets the job.
Admission lives in :mod:`.admission`, dispatch and status sync in :mod:`.dispatch`, token
issuing in :mod:`.tokens`, the backend's construction in :mod:`.backends.factory`.
"""

from __future__ import annotations

from operators.control_plane.admission import Admission
from operators.control_plane.auth import Principal, TokenCache
from operators.control_plane.backends.base import Backend, BackendError
from operators.control_plane.backends.factory import make_backend
from operators.control_plane.dispatch import Dispatcher
from operators.control_plane.errors import ServiceError, not_found
from operators.control_plane.mlflow_identities import MlflowIdentities
from operators.control_plane.db.store import JobRow, Store
from operators.control_plane.tenant_storage import TenantStorage
from operators.control_plane.tokens import TokenIssuer
from operators.control_plane.db.ledger import Ledger
from testbed.config import StackConfig, Tenant, load_stack_file
from testbed.jobs import JobSpec, JobStatus
from testbed.settings import ControlPlaneSettings
from testbed.clock import SYSTEM_CLOCK, Clock
from testbed.errors import ErrorCode


class ControlPlane:
    """The region's tenants, a job store, a backend; admission, dispatch and tokens around them."""

    def __init__(self, settings: ControlPlaneSettings, backend: Backend | None = None, store: Store | None = None,
                 clock: Clock = SYSTEM_CLOCK):
        self.settings = settings
        self.stack: StackConfig = load_stack_file(settings.stack_file)
        self.tenants: dict[str, Tenant] = {t.id: t for t in self.stack.tenants}
        self.store = store or Store(settings.database_url)
        self.backend = backend or make_backend(settings, self.stack)
        self.storage = TenantStorage(settings.storage_path)  # packages, data and job outputs of each tenant
        self.tokens = TokenCache(self.store)
        # The same ledger meters usage for /metrics and /v1/usage and for the grant check.
        self.clock = clock
        self.ledger = Ledger(self.store)
        self.ledger.install()
        self.admission = Admission(self.stack, self.store, self.backend, self.ledger, settings, self.storage)
        self.mlflow = MlflowIdentities(settings, self.store, self.tenants, clock)  # after the tokens: it derives from them
        self.dispatcher = Dispatcher(settings, self.tenants, self.store, self.backend, self.mlflow.job_env, clock)
        self.issuer = TokenIssuer(self.store, self.tokens, self.tenants, self.stack.region.id, settings.credentials_dir,
                                  settings.operator_token_sha256, settings.monitoring_token_sha256)
        self.issuer.bootstrap()
        self.mlflow.provision()  # best effort: retried at dispatch and at GET /v1/mlflow/credentials

    def start(self) -> None:
        """Start the background sync (status, logs, queued jobs)."""
        self.dispatcher.start()

    def shutdown(self) -> None:
        self.dispatcher.stop_sync()
        self.backend.close()
        self.store.close()

    def admit(self, principal: Principal, spec: JobSpec) -> JobRow:
        """Admission, serialised with the tenant's other admissions and dispatches (any replica)."""
        with self.store.tenant_lock(principal.subject):
            return self.admission.admit(principal, spec)

    def dispatch(self, row: JobRow) -> JobRow:
        return self.dispatcher.dispatch(row)

    def rotate_token(self, principal: Principal, subject: str) -> str:
        token = self.issuer.rotate(principal, subject)
        self.mlflow.rotated(subject)  # its MLflow password derives from the token: set the new one
        return token

    # -- what a caller may read and do with its jobs ----------------------------------------
    def visible_job(self, principal: Principal, job_id: str) -> JobRow:
        """The job, refreshed, if the caller may see it; else 404 (never revealing that it exists)."""
        row = self.store.get_job(job_id)
        if row is None or not principal.can_see(row.tenant):
            raise not_found(f"job {job_id!r}")
        if row.dispatched and not row.terminal:
            row = self.dispatcher.refresh(row)
        return row

    def list_jobs(self, principal: Principal, status: JobStatus | None = None, limit: int | None = None,
                  after: tuple[float, str] | None = None) -> list[JobRow]:
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
        return self.dispatcher.stop(self.visible_job(principal, job_id))
