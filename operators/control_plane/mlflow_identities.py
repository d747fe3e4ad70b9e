"""Each tenant's MLflow identity (``operators.mlflow_access``), provisioned and handed out by the control plane.

Passwords are derived, never stored: ``HMAC-SHA256(admin password, "<user>:<generation>")`` where the
generation of a tenant is the hash of its current control-plane token (``""`` while it has none). So:

- every replica computes the same password from the database and the admin Secret, nothing new is stored
  (the database alone, e.g. a backup, does not yield any MLflow password: the admin password is the key);
- rotating a tenant's token changes its MLflow password too (:meth:`MlflowIdentities.rotated` sets it on
  the server at once), so a leaked token and the MLflow login it could fetch are revoked together;
- provisioning at start re-asserts every password (idempotent), repairing a drifted or reset server.

Without ``mlflow_admin_password_file`` the region's MLflow has no access control: nothing is provisioned,
jobs get no MLflow login and ``GET /v1/mlflow/credentials`` answers 404.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time

import httpx
from collections.abc import Collection

from operators.control_plane.auth import OPERATOR, Principal
from operators.control_plane.errors import ServiceError
from operators.control_plane.db.models import DEFAULT_TOKEN_NAME, TenantExitRow, TokenRow
from operators.control_plane.db.store import Store
from operators.mlflow_access import (
    OPERATOR_USERNAME,
    MlflowAccessAdmin,
    MlflowAccessError,
    MlflowCredentials,
)
from testbed.api import MlflowLogin
from testbed.clock import SYSTEM_CLOCK, Clock
from testbed.settings import ControlPlaneSettings
from testbed.errors import ErrorCode
from testbed.tenant_exit import MlflowPurged

log = logging.getLogger("testbed.control_plane")
LOCK = "testbed:mlflow"
# After a failed provisioning, dispatch and logins wait this long before asking MLflow again: a dispatch runs in
# its tenant's lock and must not wait on an unreachable MLflow job after job.
RETRY_SECONDS = 30.0
ADMIN_TIMEOUT_SECONDS = 10.0
STATE_TTL_SECONDS = 2.0
HEALTH_TIMEOUT_SECONDS = 1.0


def read_admin_password(settings: ControlPlaneSettings) -> str | None:
    if settings.mlflow_admin_password_file is None:
        return None
    return settings.mlflow_admin_password_file.read_text().strip()


class MlflowIdentities:
    """The tenants' and the operator's MLflow logins of one region."""

    def __init__(
        self, settings: ControlPlaneSettings, store: Store, tenants: Collection[str], clock: Clock = SYSTEM_CLOCK
    ):
        self.settings = settings
        self.store = store
        self.tenants = list(tenants)
        self._admin_password = read_admin_password(settings)
        self.clock = clock
        self._provisioned = False
        self._next_try = 0.0  # monotonic time before which a failed provisioning is not retried
        self._mutex = threading.Lock()
        self._state, self._state_at = "unavailable", -STATE_TTL_SECONDS

    @property
    def enabled(self) -> bool:
        return self._admin_password is not None

    # -- passwords ------------------------------------------------------------------------
    def _generation(self, subject: str) -> str:
        with self.store.session() as s:
            row = (
                s.query(TokenRow)
                .filter(TokenRow.subject == subject, TokenRow.name == DEFAULT_TOKEN_NAME, TokenRow.revoked_at.is_(None))
                .order_by(TokenRow.created_at.desc())
                .first()
            )
            return row.token_hash if row is not None else ""

    def password(self, username: str, generation: str) -> str:
        assert self._admin_password is not None
        digest = hmac.new(self._admin_password.encode(), f"{username}:{generation}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def tenant_credentials(self, tenant: str) -> MlflowCredentials:
        return MlflowCredentials(tenant, self.password(tenant, self._generation(tenant)), tenant)

    def operator_credentials(self) -> MlflowCredentials:
        return MlflowCredentials(OPERATOR_USERNAME, self.password(OPERATOR_USERNAME, self._generation(OPERATOR)))

    def _admin(self) -> MlflowAccessAdmin:
        assert self._admin_password is not None
        return MlflowAccessAdmin(self.settings.mlflow_tracking_uri, self._admin_password, timeout=ADMIN_TIMEOUT_SECONDS)

    # -- provisioning ---------------------------------------------------------------------
    def provision(self) -> bool:
        """Operator and every tenant, idempotent, under the replicas' lock; False (logged) if MLflow failed."""
        if not self.enabled:
            return False
        with self._mutex:
            if self._provisioned:
                return True
            if self.clock.monotonic() < self._next_try:
                return False
            try:
                with self.store.lock(LOCK), self._admin() as admin:
                    operator = self.operator_credentials()
                    admin.ensure_operator(operator.password)
                    purged = self._purged_tenants()  # a purged company is not given a new workspace
                    for tenant in self.tenants:
                        if tenant in purged:
                            continue
                        admin.ensure_tenant(tenant, self.tenant_credentials(tenant).password)
            except MlflowAccessError as exc:
                log.warning("MLflow identities not provisioned yet (retried in %g s): %s", RETRY_SECONDS, exc)
                self._next_try = self.clock.monotonic() + RETRY_SECONDS
                return False
            self._provisioned = True
            log.info("MLflow identities provisioned: operator and %d tenants", len(self.tenants))
            return True

    def _purged_tenants(self) -> set[str]:
        with self.store.session() as s:
            return set(s.scalars(s.query(TenantExitRow.tenant).filter(TenantExitRow.kind == "purge").statement))

    def purge(self, tenant: str) -> MlflowPurged | None:
        """Remove the tenant's MLflow workspace (experiments, runs, artifacts, models, ...) and user, as admin.

        None where this region's MLflow has no access control (no workspace per tenant: nothing to tell apart).
        Raises ``mlflow_unavailable`` when MLflow fails; a purge run again finishes what was left.
        """
        if not self.enabled:
            return None
        try:
            with self.store.lock(LOCK), self._admin() as admin:
                return admin.purge_tenant(tenant)
        except MlflowAccessError as exc:
            raise ServiceError(
                ErrorCode.MLFLOW_UNAVAILABLE,
                f"the MLflow data of {tenant!r} was not removed, so the purge was not recorded; run it again: {exc}",
            ) from None

    def rotated(self, subject: str) -> None:
        """A token was rotated: set the subject's new derived MLflow password (old one stops working)."""
        if not self.enabled:
            return
        try:
            with self.store.lock(LOCK), self._admin() as admin:
                if subject == OPERATOR:
                    admin.ensure_operator(self.operator_credentials().password)
                else:
                    admin.ensure_tenant(subject, self.tenant_credentials(subject).password)
        except MlflowAccessError as exc:  # the next start re-asserts it
            log.warning("MLflow password of %s not updated: %s", subject, exc)
            self._provisioned = False

    # -- the server's state ----------------------------------------------------------------
    def state(self) -> str:
        """``ok`` or ``unavailable``: the tracking server's ``/health``, asked at most every
        ``STATE_TTL_SECONDS``. While it is down the identities count as unprovisioned, so the first check that
        finds it back re-provisions them at once (a server restarted from an empty auth database works again)."""
        now = time.monotonic()
        with self._mutex:
            if now - self._state_at < STATE_TTL_SECONDS:
                return self._state
        try:
            answer = httpx.get(
                self.settings.mlflow_tracking_uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_SECONDS
            )
            state = "ok" if answer.status_code == 200 else "unavailable"
        except httpx.HTTPError:
            state = "unavailable"
        with self._mutex:
            self._state, self._state_at = state, time.monotonic()
            if state == "unavailable":
                self._provisioned, self._next_try = False, 0.0
        if state == "ok" and self.enabled:
            self.provision()
        return state

    # -- handing out ----------------------------------------------------------------------
    def job_env(self, tenant: str) -> dict[str, str]:
        """MLFLOW_TRACKING_USERNAME/PASSWORD and MLFLOW_WORKSPACE of a job's tenant (empty: no access control)."""
        if not self.enabled:
            return {}
        self.provision()  # best effort: a job is never held back, its tenant may be provisioned meanwhile
        return self.tenant_credentials(tenant).job_env()

    def login(self, principal: Principal) -> MlflowLogin:
        if not self.enabled:
            raise ServiceError(ErrorCode.NOT_FOUND, "this region's MLflow has no access control: no login to hand out")
        if principal.is_operator:
            credentials = self.operator_credentials()
        elif principal.subject in self.tenants:
            credentials = self.tenant_credentials(principal.subject)
        else:
            raise ServiceError(ErrorCode.FORBIDDEN, "only tenants and the operator have an MLflow login")
        if self.state() != "ok" or not self.provision():
            raise ServiceError(
                ErrorCode.MLFLOW_UNAVAILABLE,
                f"the MLflow server ({self.settings.mlflow_tracking_uri}) "
                "is not answering; your login works again once it is back",
            )
        return MlflowLogin(
            tracking_uri=self.settings.mlflow_public_url or self.settings.mlflow_tracking_uri,
            username=credentials.username,
            password=credentials.password,
            workspace=credentials.workspace,
        )
