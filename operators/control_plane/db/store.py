"""Durable state of the control plane: tokens and job records (SQLAlchemy; SQLite or PostgreSQL).

A job record is written before the backend is called and is the job's history after the backend
forgets it: final status, times and logs stay here. Alembic owns the schema (:mod:`.migrate`). The
transactions and locked sections the store's calls run in are :class:`.transactions.Database`'s.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from operators.control_plane.db import balances
from operators.control_plane.db.held import (
    DISPATCHED_UNFINISHED,
    HELD_BY,
    HELD_SUMS,
    QUEUED_AND_HELD,
    TENANT_JOBS,
    UNFINISHED,
    Held,
    QueuedJob,
    TenantJobs,
    tenant_jobs_of,
)
from operators.control_plane.db.migrate import upgrade
from operators.control_plane.db.models import DEFAULT_TOKEN_NAME, JobRow, TokenRow
from operators.control_plane.db.transactions import Database
from testbed.jobs import TERMINAL_STATUSES, JobStatus

LOG_LIMIT_BYTES = 1_000_000  # stored logs keep the last MB of a job's output
# The message the testbed gives a job it stops (max run time, grant, idle GPUs) starts so; it is the job's last
# word: no later observation of the backend (its own "stopped", from any replica) replaces it.
STOP_REASON_PREFIX = "stopped:"

_JOBS = JobRow.__table__
# The job still waits: admitted, not dispatched, not ended (the writes below change nothing otherwise).
_STILL_QUEUED = (_JOBS.c.id == bindparam("job_id"), _JOBS.c.dispatched.is_(False), UNFINISHED)
# A queued job handed to the backend: not an end, so nothing else moves with it (no money, usage or audit row).
_MARK_DISPATCHED = (
    update(_JOBS)
    .where(*_STILL_QUEUED)
    .values(dispatched=True, backend_ref=bindparam("ref"), message="", last_seen_at=bindparam("seen"))
)

_QUEUED_MESSAGE = update(_JOBS).where(*_STILL_QUEUED).values(message=bindparam("text"))


class Store(Database):
    """Tokens and jobs, behind short transactions; the schema is brought up to date first."""

    def __init__(self, url: str, migrate: bool = True, opening_prices: dict[str, Any] | None = None):
        # Called inside the transaction that moves jobs into a terminal state (e.g. the ledger), once with all of
        # them (a sync batch ends many at once).
        self.on_terminal: list[Callable[[Session, list[JobRow]], None]] = []
        balances.install()  # every ledger entry moves its tenant's running balance in its own transaction
        if migrate:
            upgrade(url, opening_prices=opening_prices)
        super().__init__(url)

    # -- tokens ---------------------------------------------------------------------------
    def put_token(
        self,
        token_hash: str,
        subject: str,
        role: str,
        name: str = DEFAULT_TOKEN_NAME,
        on_write: Callable[[Session, list[TokenRow]], None] | None = None,
    ) -> None:
        """Store a subject's new token hash under ``name``; its older token of that name is revoked (kept).

        ``on_write(session, revoked rows)`` runs in the same transaction (the audit row).
        """
        now = time.time()
        with self.write_session() as s:
            revoked = list(
                s.scalars(
                    select(TokenRow).where(
                        TokenRow.subject == subject,
                        TokenRow.role == role,
                        TokenRow.name == name,
                        TokenRow.revoked_at.is_(None),
                        TokenRow.token_hash != token_hash,
                    )
                )
            )
            for row in revoked:
                row.revoked_at = now
            s.merge(
                TokenRow(token_hash=token_hash, subject=subject, role=role, created_at=now, name=name, revoked_at=None)
            )
            if on_write is not None:
                on_write(s, revoked)

    def revoke_tokens(
        self, subject: str, name: str, on_write: Callable[[Session, list[TokenRow]], None] | None = None
    ) -> list[TokenRow]:
        """Revoke a subject's active token(s) of ``name``; the rows stay, marked revoked."""
        with self.write_session() as s:
            rows = list(
                s.scalars(
                    select(TokenRow).where(
                        TokenRow.subject == subject, TokenRow.name == name, TokenRow.revoked_at.is_(None)
                    )
                )
            )
            for row in rows:
                row.revoked_at = time.time()
            if rows and on_write is not None:
                on_write(s, rows)
            return rows

    def find_token(self, token_hash: str) -> TokenRow | None:
        """The token of this hash, unless revoked."""
        with self.session() as s:
            row = s.get(TokenRow, token_hash)
            return row if row is not None and row.revoked_at is None else None

    def list_tokens(self, subject: str) -> list[TokenRow]:
        """A subject's tokens, active and revoked, oldest first."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(TokenRow).where(TokenRow.subject == subject).order_by(TokenRow.created_at, TokenRow.name)
                )
            )

    def token_subjects(self) -> set[str]:
        """Subjects that hold an active default token."""
        with self.session() as s:
            return set(
                s.scalars(
                    select(TokenRow.subject).where(TokenRow.revoked_at.is_(None), TokenRow.name == DEFAULT_TOKEN_NAME)
                )
            )

    # -- jobs -----------------------------------------------------------------------------
    def add_job(self, row: JobRow) -> JobRow:
        with self.write_session() as s:
            s.add(row)
        return row

    def get_job(self, job_id: str) -> JobRow | None:
        with self.session() as s:
            return s.get(JobRow, job_id)

    def held_if_queued(self, tenant: str, job_id: str) -> Held | None:
        """What the tenant's dispatched, unfinished jobs hold, if its job ``job_id`` is still admitted, not dispatched
        and not ended; else None (one read, no record loaded)."""
        with self.read() as conn:
            queued, *held = conn.execute(QUEUED_AND_HELD, {"tenant": tenant, "job_id": job_id}).one()
        return Held.of(held) if queued else None

    def list_jobs(
        self,
        tenant: str | None = None,
        status: JobStatus | None = None,
        limit: int | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[JobRow]:
        """Newest first; ``after`` (submitted_at, id) of the last job of the previous page starts the next."""
        query = select(JobRow).order_by(JobRow.submitted_at.desc(), JobRow.id.desc())
        if after is not None:
            query = query.where(
                or_(JobRow.submitted_at < after[0], and_(JobRow.submitted_at == after[0], JobRow.id < after[1]))
            )
        if tenant is not None:
            query = query.where(JobRow.tenant == tenant)
        if status is not None:
            query = query.where(JobRow.status == status.value)
        if limit is not None:
            query = query.limit(limit)
        with self.session() as s:
            return list(s.scalars(query))

    def active_jobs(self) -> list[JobRow]:
        """Jobs not yet in a terminal state, oldest first."""
        terminal = [status.value for status in TERMINAL_STATUSES]
        query = select(JobRow).where(JobRow.status.not_in(terminal)).order_by(JobRow.submitted_at)
        with self.session() as s:
            return list(s.scalars(query))

    def dispatched_jobs(self, status: JobStatus | None = None) -> list[JobRow]:
        """Dispatched jobs not yet in a terminal state (or in ``status``), oldest first."""
        query = select(JobRow).where(JobRow.dispatched.is_(True)).order_by(JobRow.submitted_at)
        query = query.where(JobRow.status == status.value) if status is not None else query.where(UNFINISHED)
        with self.session() as s:
            return list(s.scalars(query))

    def queued_jobs(self) -> list[QueuedJob]:
        """Admitted jobs not yet dispatched (nor ended), oldest first, as the few columns dispatch needs."""
        query = (
            select(JobRow.id, JobRow.tenant, JobRow.cpus, JobRow.gpus, JobRow.memory_bytes, JobRow.message)
            .where(JobRow.dispatched.is_(False), UNFINISHED)
            .order_by(JobRow.submitted_at, JobRow.id)
        )
        with self.session() as s:
            return [QueuedJob(*row) for row in s.execute(query)]

    def held_by_tenant(self) -> dict[str, Held]:
        """What each tenant's dispatched, unfinished jobs hold, in one read."""
        query = select(JobRow.tenant, *HELD_SUMS).where(*DISPATCHED_UNFINISHED).group_by(JobRow.tenant)
        with self.session() as s:
            return {tenant: Held.of(sums) for tenant, *sums in s.execute(query)}

    def held_by(self, tenant: str, exclude: str | None = None) -> Held:
        """What a tenant's dispatched, unfinished jobs hold (but ``exclude``)."""
        with self.read() as conn:
            return Held.of(conn.execute(HELD_BY, {"tenant": tenant, "exclude": exclude or ""}).one())

    def tenant_jobs(self, tenant: str) -> TenantJobs:
        """How many of a tenant's jobs wait and what its dispatched ones hold, in one read."""
        with self.read() as conn:
            return tenant_jobs_of(conn.execute(TENANT_JOBS, {"tenant": tenant}).one())

    def idle_gpu_seconds(self, tenants: list[str] | None = None) -> dict[str, float]:
        """Tenant -> GPU-seconds its jobs held idle (operators/control_plane/idle.py)."""
        query = (
            select(JobRow.tenant, func.sum(JobRow.idle_gpu_seconds))
            .where(JobRow.idle_gpu_seconds > 0)
            .group_by(JobRow.tenant)
        )
        if tenants is not None:
            query = query.where(JobRow.tenant.in_(tenants))
        with self.session() as s:
            return {tenant: float(seconds or 0.0) for tenant, seconds in s.execute(query)}

    def update_jobs(self, changes: dict[str, dict[str, Any]]) -> list[JobRow]:
        """Apply many jobs' changes in one transaction (one sync round).

        The rows are locked first, in id order: a reader refreshing one of them (another replica)
        waits before this round folds anything, rather than deadlocking on a ledger row.
        """
        rows = []
        with self.write_session() as s:
            locked = {
                row.id: row
                for row in s.scalars(
                    select(JobRow).where(JobRow.id.in_(sorted(changes))).order_by(JobRow.id).with_for_update()
                )
            }
            ended = []
            for job_id, job_changes in changes.items():
                row, ends = self._change(s, job_id, job_changes, locked.get(job_id))
                if row is not None:
                    rows.append(row)
                if ends:
                    ended.append(row)
            self._ended(s, ended)
        return rows

    def mark_dispatched(self, row: JobRow, ref: str, now: float) -> JobRow | None:
        """Record that the backend took a queued job (one UPDATE, on SQLite in a group commit): ``row`` with the
        change, or the job as it now is if it was no longer queued (ended or dispatched meanwhile)."""
        params = {"job_id": row.id, "ref": ref, "seen": now}
        if self.group_write(lambda s: s.connection().execute(_MARK_DISPATCHED, params).rowcount):
            row.dispatched, row.backend_ref, row.message, row.last_seen_at = True, ref, "", now
            return row
        return self.get_job(row.id)

    def tell_queued(self, row: JobRow, message: str) -> JobRow | None:
        """Set a queued job's message (why it waits): one UPDATE, none if it already says so; ``row`` with the
        change, or the job as it now is if it was no longer queued."""
        if row.message == message:
            return row
        params = {"job_id": row.id, "text": message}
        if self.group_write(lambda s: s.connection().execute(_QUEUED_MESSAGE, params).rowcount):
            row.message = message
            return row
        return self.get_job(row.id)

    def update_job(self, job_id: str, **changes: Any) -> JobRow | None:
        """Apply changes to a job, unless it is already terminal (a terminal record is final); on SQLite in a
        group commit with other threads' writes."""
        return self.group_write(lambda s: self._apply(s, job_id, changes))

    def _apply(self, s: Session, job_id: str, changes: dict[str, Any]) -> JobRow | None:
        """Change a job and run the terminal hooks if it ends."""
        row, ends = self._change(s, job_id, changes)
        if ends:
            self._ended(s, [row])
        return row

    def _ended(self, s: Session, rows: list[Any]) -> None:
        """The terminal hooks, once for all the jobs that end in ``s``'s transaction."""
        if rows:
            for hook in self.on_terminal:
                hook(s, rows)

    def _change(
        self, s: Session, job_id: str, changes: dict[str, Any], row: JobRow | None = None
    ) -> tuple[JobRow | None, bool]:
        """Change a job (``row``: already read and locked in ``s``) unless it is terminal; (the job, whether it
        ended now)."""
        if changes.get("logs") is not None:
            changes["logs"] = changes["logs"][-LOG_LIMIT_BYTES:]
        row = row or s.get(JobRow, job_id, with_for_update=True)
        if row is None or row.terminal:
            return row, False
        if row.stop_requested_at is not None and row.message.startswith(STOP_REASON_PREFIX):
            changes.pop("message", None)  # decided on the locked row: a sync that read the job earlier loses
        if row.started_at is not None and "started_at" in changes:
            # Billing starts at the first observation that found the job started. The sync and a request's refresh
            # both observe a starting job; the one that read it before the other's write must not move the start
            # (already shown, maybe already charged from), only clamp it to the end as any observation does.
            ended = changes.get("ended_at", row.ended_at)
            changes["started_at"] = row.started_at if ended is None else min(row.started_at, ended)
        if row.last_seen_at is not None and changes.get("last_seen_at") is not None:
            # Likewise the last look that found it running: a look made earlier does not take it back (a running
            # job is metered up to it).
            changes["last_seen_at"] = max(row.last_seen_at, changes["last_seen_at"])
        for key, value in changes.items():
            setattr(row, key, value)
        return row, row.terminal
