"""Running balances: ``money_balances`` (a tenant's charged and held won and GPU-seconds) and ``money_jobs`` (a
job's hold, charges and release), built here from the ledger and kept from now on in the transaction of every
ledger entry (:mod:`operators.control_plane.db.balances`), so a balance is one row, not a sum of the tenant's history.
"""

import sqlalchemy as sa
from alembic import op

from operators.control_plane.db.balances import rebuild

revision = "0008_balances"
down_revision = "0007_scale"


def upgrade() -> None:
    op.create_table(
        "money_balances",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("charged_krw", sa.BigInteger, nullable=False),
        sa.Column("charged_gpu_seconds", sa.BigInteger, nullable=False),
        sa.Column("held_krw", sa.BigInteger, nullable=False),
        sa.Column("held_gpu_seconds", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "money_jobs",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("held", sa.Boolean, nullable=False),
        sa.Column("released", sa.Boolean, nullable=False),
        sa.Column("hold_krw", sa.BigInteger, nullable=False),
        sa.Column("gpu_need_seconds", sa.BigInteger, nullable=False),
        sa.Column("charged_krw", sa.BigInteger, nullable=False),
        sa.Column("charged_gpu_seconds", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_money_jobs_tenant", "money_jobs", ["tenant"])
    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_money_jobs_tenant", table_name="money_jobs")
    op.drop_table("money_jobs")
    op.drop_table("money_balances")
