"""Replicas: the reconciler lease, one usage row per folded job, the stop request on the job.

``usage_jobs`` is backfilled from the finished jobs, which the ledger had already folded into
``usage_totals``: the totals stay as they are and no job is ever folded again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_replicas"
down_revision = "0001_initial"

BACKFILL = """
INSERT INTO usage_jobs (job_id, tenant, gpu_model, status, cpu_seconds, gpu_seconds, memory_byte_seconds)
SELECT id, tenant, CASE WHEN gpus = 0 THEN '' ELSE COALESCE(gpu_model, 'unknown') END, status,
       cpus * seconds, gpus * seconds, memory_bytes * seconds
FROM (SELECT id, tenant, gpus, gpu_model, status, cpus, memory_bytes,
             CASE WHEN started_at IS NULL OR ended_at IS NULL OR ended_at < started_at THEN 0.0
                  ELSE ended_at - started_at END AS seconds
      FROM jobs WHERE status IN ('SUCCEEDED', 'FAILED', 'STOPPED')) AS finished
"""


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "usage_jobs",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("gpu_model", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cpu_seconds", sa.Float(), nullable=False),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.Column("memory_byte_seconds", sa.Float(), nullable=False),
    )
    op.create_index("ix_usage_jobs_tenant", "usage_jobs", ["tenant"])
    op.add_column("jobs", sa.Column("stop_requested_at", sa.Float(), nullable=True))
    op.execute(BACKFILL)
