"""Program office: idle GPUs on the job (since when its GPUs are idle, when that was last checked, the idle GPU-seconds).

The chain: 0003_money (h17) -> 0004_audit (h18) -> 0005_program (h19).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_program"
down_revision = "0004_audit"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("idle_since", sa.Float(), nullable=True))
        batch.add_column(sa.Column("idle_checked_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("idle_gpu_seconds", sa.Float(), nullable=False, server_default="0"))
    # Exports and purges of tenants (operators/control_plane/tenant_exit.py); never updated.
    op.create_table(
        "tenant_exits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
    )
    op.create_index("ix_tenant_exits_tenant", "tenant_exits", ["tenant"])
