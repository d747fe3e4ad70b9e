"""Audit trail, named tokens, closed statement months.

``audit_log`` (hash-chained, append-only) and ``audit_head`` (its newest row: the append lock);
tokens gain a ``name`` (several per company or operator) and ``revoked_at`` (a revoked token is kept,
so its earlier actions still name it); ``statement_months`` and ``statement_rows`` freeze a closed
month's statement. Follows ``0003_money`` (h17's money ledger), as the money contract says.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_audit"
down_revision = "0003_money"


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(160), nullable=True),
        sa.Column("job_id", sa.String(40), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_kind", "audit_log", ["kind"])
    op.create_index("ix_audit_log_tenant", "audit_log", ["tenant"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("name", sa.String(64), nullable=False, server_default="default"))
        batch.add_column(sa.Column("revoked_at", sa.Float(), nullable=True))
    op.create_table(
        "statement_months",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("closed_at", sa.Float(), nullable=False),
        sa.Column("closed_by", sa.String(160), nullable=True),
        sa.Column("last_ledger_id", sa.Integer(), nullable=False),
        sa.Column("rows_sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "statement_rows",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
    )
    op.create_index("ix_statement_rows_month", "statement_rows", ["month", "tenant"])
