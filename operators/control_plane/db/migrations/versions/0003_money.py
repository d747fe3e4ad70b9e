"""Money: the append-only ``money_ledger``, opened with today's usage totals priced.

Each tenant with usage in ``usage_totals`` gets one ``opening`` entry: its metered resource-seconds
(CPU milli-seconds, GPU-seconds, MiB-seconds, rounded to integers) and their cost at the price in force
for the tenant's pool when the migration runs, ``round_half_up`` to the won. The prices come from the
control plane that runs the upgrade (``migrate.upgrade(..., opening_prices=...)``); a tenant without a
price gets an opening entry with its resource-seconds and 0 won, noted "unpriced".
"""

import time

import sqlalchemy as sa
from alembic import context, op

from testbed.money import Meter, exact_cost, round_half_up

revision = "0003_money"
down_revision = "0002_replicas"

USAGE = "SELECT tenant, SUM(cpu_seconds), SUM(gpu_seconds), SUM(memory_byte_seconds) FROM usage_totals GROUP BY tenant"


def upgrade() -> None:
    ledger = op.create_table(
        "money_ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_krw", sa.BigInteger(), nullable=False),
        sa.Column("pool", sa.String(64), nullable=True),
        sa.Column("price_id", sa.String(80), nullable=True),
        sa.Column("seconds", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cpu_milli_seconds", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("gpu_seconds", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("memory_mib_seconds", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("actor", sa.String(64), nullable=True),
    )
    op.create_index("ix_money_ledger_tenant_job", "money_ledger", ["tenant", "job_id"])
    op.create_index("ix_money_ledger_job_id", "money_ledger", ["job_id"])
    prices = context.config.attributes.get("opening_prices") or {}
    now = time.time()
    rows = []
    for tenant, cpu, gpu, memory in op.get_bind().execute(sa.text(USAGE)):
        meter = Meter(
            cpu_milli_seconds=round((cpu or 0) * 1000),
            gpu_seconds=round(gpu or 0),
            memory_mib_seconds=round((memory or 0) / 2**20),
        )
        price = prices.get(tenant)
        rows.append(
            {
                "at": now,
                "tenant": tenant,
                "job_id": None,
                "kind": "opening",
                "amount_krw": round_half_up(exact_cost(meter, price.rates)) if price is not None else 0,
                "pool": price.pool if price is not None else None,
                "price_id": price.id if price is not None else None,
                "seconds": 0,
                **meter.model_dump(),
                "actor": None,
                "note": "usage metered before the money ledger"
                + ("" if price is not None else " (unpriced: no price given)"),
            }
        )
    if rows:
        op.bulk_insert(ledger, rows)
