"""Program office: idle GPUs on the job (since when its GPUs are idle, when that was last checked, the idle GPU-seconds).

down_revision: the money chain is 0003_money (h17) -> 0004_audit (h18) -> 0005_program; until those land in this
branch it follows 0003_money (the integrator relinks it to 0004_audit at merge).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_program"
down_revision = "0003_money"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("idle_since", sa.Float(), nullable=True))
        batch.add_column(sa.Column("idle_checked_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("idle_gpu_seconds", sa.Float(), nullable=False, server_default="0"))
