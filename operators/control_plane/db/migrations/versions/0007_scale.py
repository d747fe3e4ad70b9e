"""Scale: indexes for the reads admission and the reconciler make on every call.

``jobs (tenant, status)``: a tenant's unfinished jobs (its queue cap, what its running jobs hold)
without reading its finished ones. ``money_ledger (tenant, kind)``: a tenant's balance (sums by
kind, its unreleased holds) without reading its other tenants' entries.
"""

from alembic import op

revision = "0007_scale"
down_revision = "0005_program"  # the newest before it here; 0006_portal (h20) goes between if it lands


def upgrade() -> None:
    op.create_index("ix_jobs_tenant_status", "jobs", ["tenant", "status"])
    op.create_index("ix_money_ledger_tenant_kind", "money_ledger", ["tenant", "kind"])


def downgrade() -> None:
    op.drop_index("ix_money_ledger_tenant_kind", table_name="money_ledger")
    op.drop_index("ix_jobs_tenant_status", table_name="jobs")
