"""Queue index: ``jobs (tenant, dispatched, status)``.

Admission counts a tenant's waiting jobs (its queue cap) and sums what its dispatched ones hold; a request's
dispatch sums the latter too. With the index each is a range of its own: the count reads the index alone and the
sums read only the dispatched jobs, so a long queue (a sweep of hundreds of jobs) no longer makes every admission
read every waiting job's row (``ix_jobs_tenant_status`` scanned them all).
"""

from alembic import op

revision = "0010_queue_index"
down_revision = "0009_audit_inbox"


def upgrade() -> None:
    op.create_index("ix_jobs_tenant_dispatched_status", "jobs", ["tenant", "dispatched", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_dispatched_status", table_name="jobs")
