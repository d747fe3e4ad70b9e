"""Every table of the control plane's database, in one place (SQLAlchemy declarative models).

Alembic owns the schema (``migrations/``); a change here comes with a migration. ``NOOP_JOBS`` is the
no-op backend's own table (created by that backend on PostgreSQL, outside Alembic's history).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from testbed.jobs import TERMINAL_STATUSES, JobStatus


class Base(DeclarativeBase):
    pass


DEFAULT_TOKEN_NAME = "default"  # the token `testbed tenants token ID --rotate` (and first login) issues


class TokenRow(Base):
    """A bearer token, stored only as its SHA-256 hash; a subject may hold several, each with a name.

    A rotated or revoked token is kept with ``revoked_at`` set (it no longer resolves), so the actions
    it took still name it.
    """

    __tablename__ = "tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)  # tenant id, or "operator"
    role: Mapped[str] = mapped_column(String(16))  # "tenant" | "operator"
    created_at: Mapped[float] = mapped_column(Float)
    name: Mapped[str] = mapped_column(String(64), default=DEFAULT_TOKEN_NAME, server_default=DEFAULT_TOKEN_NAME)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class JobRow(Base):
    """One job: its spec, its resources, its life and, once ended, its logs."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_status", "tenant", "status"),  # 0007_scale
        Index("ix_jobs_tenant_dispatched_status", "tenant", "dispatched", "status"),  # 0010_queue_index
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    region: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    experiment: Mapped[str] = mapped_column(String(160))
    status: Mapped[str] = mapped_column(String(16), index=True)
    entrypoint: Mapped[str] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(String(64), nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    cpus: Mapped[float] = mapped_column(Float)
    gpus: Mapped[int] = mapped_column(Integer)
    gpu_model: Mapped[str | None] = mapped_column(String(32), nullable=True)
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    submitted_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_seen_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False)
    backend_ref: Mapped[str | None] = mapped_column(String(80), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    logs: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When a stop was asked for: a job its backend then forgets (a deleted RayJob) ended STOPPED.
    stop_requested_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Idle GPUs (operators/control_plane/idle.py): since when every GPU of the job has stayed under the idle
    # threshold (None: not idle), when that was last checked, and the idle GPU-seconds counted so far.
    idle_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    idle_checked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    idle_gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")

    @property
    def terminal(self) -> bool:
        return JobStatus(self.status) in TERMINAL_STATUSES


class LeaseRow(Base):
    """A named lease and who holds it until when (epoch seconds)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Float)
    acquired_at: Mapped[float] = mapped_column(Float)


class UsageTotalRow(Base):
    """Allocated use of a tenant's finished jobs on one GPU model ('' for CPU-only jobs)."""

    __tablename__ = "usage_totals"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    gpu_model: Mapped[str] = mapped_column(String(32), primary_key=True)
    cpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    memory_byte_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    jobs_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    jobs_failed: Mapped[int] = mapped_column(Integer, default=0)
    jobs_stopped: Mapped[int] = mapped_column(Integer, default=0)


class UsageJobRow(Base):
    """What one finished job added to its tenant's totals (its key makes a fold happen once)."""

    __tablename__ = "usage_jobs"

    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    gpu_model: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    cpu_seconds: Mapped[float] = mapped_column(Float)
    gpu_seconds: Mapped[float] = mapped_column(Float)
    memory_byte_seconds: Mapped[float] = mapped_column(Float)


NOOP_JOBS = Table(
    "noop_jobs",
    MetaData(),
    Column("job_id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("submitted_at", Float, nullable=False),
    Column("run_seconds", Float, nullable=False),
    Column("submits", Integer, nullable=False),
    Column("submitter", String(128), nullable=False),
    Column("stopped_at", Float, nullable=True),
)


# -- money (h17): the append-only money ledger; operators/control_plane/db/money.py reads and writes it --------
class MoneyLedgerRow(Base):
    """One ledger entry (append-only)."""

    __tablename__ = "money_ledger"
    __table_args__ = (
        Index("ix_money_ledger_tenant_job", "tenant", "job_id"),
        Index("ix_money_ledger_tenant_kind", "tenant", "kind"),
    )  # 0007_scale

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    tenant: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount_krw: Mapped[int] = mapped_column(BigInteger)
    pool: Mapped[str | None] = mapped_column(String(64), nullable=True)
    price_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu_milli_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    gpu_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    memory_mib_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)


class MoneyBalanceRow(Base):
    """A tenant's running balance, kept by :mod:`.balances` in the transaction of every ledger entry (0008_balances):
    what :meth:`MoneyLedger.read_balance` reads instead of summing the tenant's whole ledger."""

    __tablename__ = "money_balances"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    charged_krw: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_gpu_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    held_krw: Mapped[int] = mapped_column(BigInteger, default=0)
    held_gpu_seconds: Mapped[int] = mapped_column(BigInteger, default=0)


class MoneyJobRow(Base):
    """A job's money so far (its hold, its charges, whether the hold is released), kept with the balance: what a
    ledger entry of the job changes the tenant's held amount by."""

    __tablename__ = "money_jobs"

    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    held: Mapped[bool] = mapped_column(Boolean, default=False)  # it has a hold entry
    released: Mapped[bool] = mapped_column(Boolean, default=False)
    hold_krw: Mapped[int] = mapped_column(BigInteger, default=0)
    gpu_need_seconds: Mapped[int] = mapped_column(BigInteger, default=0)  # its GPUs x its max run time
    charged_krw: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_gpu_seconds: Mapped[int] = mapped_column(BigInteger, default=0)


class TenantExitRow(Base):
    """An export (``kind`` export) or purge (``kind`` purge) of a tenant; never updated."""

    __tablename__ = "tenant_exits"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditRow(Base):
    """One audited action. Never updated, never deleted."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[float] = mapped_column(Float, index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    actor: Mapped[str | None] = mapped_column(String(160), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON of an object
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditInboxRow(Base):
    """An audited action written in the transaction it records, not yet linked into the chain: ``audit.drain``
    moves it into ``audit_log`` (the next sync round, or before any read of the trail)."""

    __tablename__ = "audit_inbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[str | None] = mapped_column(String(160), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON of an object


class AuditHead(Base):
    """The chain's newest row (one row, id 1): the append lock, and an anchor against removing the newest rows."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class StatementMonthRow(Base):
    """A closed month."""

    __tablename__ = "statement_months"

    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    closed_at: Mapped[float] = mapped_column(Float)
    closed_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    last_ledger_id: Mapped[int] = mapped_column(Integer)
    rows_sha256: Mapped[str] = mapped_column(String(64))


class StatementRowRow(Base):
    """A tenant's frozen statement of a closed month (canonical JSON of a TenantStatement)."""

    __tablename__ = "statement_rows"
    __table_args__ = (Index("ix_statement_rows_month", "month", "tenant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    month: Mapped[str] = mapped_column(String(7))
    tenant: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)
