"""Audit inbox: ``audit_inbox`` holds audited actions written in the transaction they record until they are
linked into the hash chain (``audit_log``) in batches, so a transaction that records an admission, a charge or a
release no longer locks the chain's one head row (every writer of every replica queued on it until commit).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_audit_inbox"
down_revision = "0008_balances"


def upgrade() -> None:
    op.create_table(
        "audit_inbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(160), nullable=True),
        sa.Column("job_id", sa.String(40), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_inbox")
