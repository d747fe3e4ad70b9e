"""A region's plan from its budget: what the money buys, the node pools that serve the grants, what is left.

Arithmetic (docs/program-office/plan.md works one region through by hand):

- A pool's **node-hour** costs ``gpus x gpu_hour_krw + cpus x cpu_hour_krw + GiB x gib_hour_krw`` (the price row in
  force on the fiscal period's first day); a **loaded GPU-hour** is a GPU with its share of the node's CPUs and
  memory: node-hour / GPUs per node. Amounts are supply amounts (excl. VAT): VAT is not an eligible cost.
- **The budget buys** ``budget / loaded GPU-hour`` GPU-hours of a pool (were it all spent there).
- **A grant asks** for ``krw / loaded GPU-hour`` of its tenant's pool, or its ``gpu_hours`` cap if that is
  smaller (whichever cap is reached first applies).
- **Average GPUs busy** in a pool = sum over its grants of GPU-hours / the grant's own period in hours.
- **max_size** = ceil(average GPUs / (target utilisation x GPUs per node)), and at least the nodes the largest
  tenant quota of the pool needs at once; **min_size** = floor(average GPUs / GPUs per node) (the nodes busy
  even at the average rate).
- **Deliverable** GPU-hours of a pool = max_size x GPUs per node x period hours x target utilisation; the stack's
  own sizes can deliver ``max_size x GPUs per node x period hours`` at most (100 % busy): fewer than the granted
  hours and the grants cannot be served within the period (``pulumi preview`` warns).
- **Unallocated** = budget - sum of grants (per funding source: each grant split by its funding shares); each
  grant's **share** = grant / budget.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from testbed import tables
from testbed.config import NodePool, StackConfig

GIB = 2**30
DEFAULT_TARGET_UTILISATION = 0.7


class PoolPlan(BaseModel):
    """One node pool: its price, what the budget buys there, what the grants ask, the sizes that serve them."""

    pool: str
    gpu_model: str
    gpus_per_node: int
    price_id: str
    gpu_hour_krw: int
    node_hour_krw: int
    loaded_gpu_hour_krw: float
    budget_gpu_hours: float = Field(description="GPU-hours the whole budget buys if spent on this pool only")
    granted_gpu_hours: float
    average_gpus_busy: float
    min_size: int
    max_size: int
    deliverable_gpu_hours: float = Field(description="at max_size and the target utilisation, over the period")
    stack_min_size: int
    stack_max_size: int
    stack_capacity_gpu_hours: float = Field(description="the stack's max_size, 100 % busy, over the period")

    @property
    def stack_falls_short(self) -> bool:
        return self.granted_gpu_hours > self.stack_capacity_gpu_hours + 1e-9


class GrantPlan(BaseModel):
    tenant: str
    pool: str
    krw: int
    gpu_hours: float
    share: float = Field(description="grant / budget")
    cost_item: str
    funding_krw: dict[str, int]


class FundingPlan(BaseModel):
    source: str
    budget_krw: int
    granted_krw: int
    unallocated_krw: int


class Plan(BaseModel):
    """``testbed plan --json``."""

    region: str
    period_start: dt.date
    period_end: dt.date
    period_hours: float
    target_utilisation: float
    budget_krw: int
    granted_krw: int
    unallocated_krw: int
    pools: list[PoolPlan]
    grants: list[GrantPlan]
    funding: list[FundingPlan]

    def warnings(self) -> list[str]:
        """One line per pool whose stack sizes cannot deliver its granted GPU-hours within the period."""
        return [
            f"node pool {p.pool!r}: the grants need {p.granted_gpu_hours:,.0f} GPU-hours by {self.period_end}, but "
            f"max_size {p.stack_max_size} x {p.gpus_per_node} GPUs delivers at most {p.stack_capacity_gpu_hours:,.0f} "
            f"in the period; raise max_size to at least {p.max_size} (testbed plan, target utilisation "
            f"{self.target_utilisation:.0%})"
            for p in self.pools
            if p.stack_falls_short
        ]


def _hours(start: dt.date, end: dt.date) -> float:
    """Hours of an inclusive day range."""
    return ((end - start).days + 1) * 24.0


def node_hour_krw(pool: NodePool, gpu_hour: int, cpu_hour: int, gib_hour: int) -> int:
    return pool.gpus_per_node * gpu_hour + pool.cpus_per_node * cpu_hour + pool.memory_per_node // GIB * gib_hour


def split_by_shares(amount: int, shares: dict[str, float]) -> dict[str, int]:
    """Whole won per funding source; the rounding remainder goes to the largest share (sums to ``amount``)."""
    parts = {source: int(amount * share) for source, share in shares.items()}
    if parts:
        largest = max(shares, key=lambda s: shares[s])
        parts[largest] += amount - sum(parts.values())
    return parts


def plannable(stack: StackConfig) -> bool:
    """The stack has a budget and a price for every pool on its period's first day."""
    if stack.budget is None:
        return False
    at = dt.datetime.combine(stack.budget.fiscal_period.start, dt.time(12), tzinfo=dt.timezone.utc)
    try:
        for pool in stack.node_pools:
            stack.price_for(pool.name, at)
    except (KeyError, LookupError, ValueError):
        return False
    return True


def make_plan(stack: StackConfig, target_utilisation: float = DEFAULT_TARGET_UTILISATION) -> Plan:
    """The region's plan (see the module docstring for the arithmetic)."""
    if not 0 < target_utilisation <= 1:
        raise ValueError(f"target utilisation {target_utilisation} is not within (0, 1]")
    budget = stack.budget
    if budget is None:
        raise ValueError(f"region {stack.region.id!r} has no testbed:budget in its stack file")
    start, end = budget.fiscal_period.start, budget.fiscal_period.end
    period_hours = _hours(start, end)
    at = dt.datetime.combine(start, dt.time(12), tzinfo=dt.timezone.utc)  # midday UTC: the period's first KST day
    funding = {source.value: int(amount) for source, amount in budget.funding.items()}
    budget_krw = sum(funding.values())

    loaded: dict[str, float] = {}
    prices: dict[str, Any] = {}
    for pool in stack.node_pools:
        price = stack.price_for(pool.name, at)
        prices[pool.name] = price
        loaded[pool.name] = (
            node_hour_krw(pool, price.gpu_hour_krw, price.cpu_hour_krw, price.gib_hour_krw) / pool.gpus_per_node
        )

    grants: list[GrantPlan] = []
    average: dict[str, float] = {p.name: 0.0 for p in stack.node_pools}
    granted_hours: dict[str, float] = {p.name: 0.0 for p in stack.node_pools}
    largest_quota: dict[str, int] = {p.name: 0 for p in stack.node_pools}
    for tenant in stack.tenants:
        grant, pool = tenant.grant, stack.pool_for(tenant)
        krw = int(grant.krw or 0)
        caps = [float(grant.gpu_hours)] if grant.gpu_hours else []
        caps += [krw / loaded[pool.name]] if grant.krw is not None else []
        hours = min(caps)
        granted_hours[pool.name] += hours
        average[pool.name] += hours / _hours(grant.start, grant.end)
        largest_quota[pool.name] = max(largest_quota[pool.name], tenant.quota.gpus)
        shares = {source.value: float(share) for source, share in grant.funding_shares.items()}
        grants.append(
            GrantPlan(
                tenant=tenant.id,
                pool=pool.name,
                krw=krw,
                gpu_hours=hours,
                share=krw / budget_krw if budget_krw else 0.0,
                cost_item=grant.cost_item.value,
                funding_krw=split_by_shares(krw, shares),
            )
        )

    pools = []
    for pool in stack.node_pools:
        price = prices[pool.name]
        busy = average[pool.name]
        max_size = max(
            math.ceil(busy / (target_utilisation * pool.gpus_per_node) - 1e-9),
            math.ceil(largest_quota[pool.name] / pool.gpus_per_node),
            1 if busy > 0 else 0,
        )
        pools.append(
            PoolPlan(
                pool=pool.name,
                gpu_model=pool.gpu_model,
                gpus_per_node=pool.gpus_per_node,
                price_id=f"{pool.name}@{price.effective_from}",
                gpu_hour_krw=price.gpu_hour_krw,
                node_hour_krw=node_hour_krw(pool, price.gpu_hour_krw, price.cpu_hour_krw, price.gib_hour_krw),
                loaded_gpu_hour_krw=loaded[pool.name],
                budget_gpu_hours=budget_krw / loaded[pool.name],
                granted_gpu_hours=granted_hours[pool.name],
                average_gpus_busy=busy,
                min_size=math.floor(busy / pool.gpus_per_node + 1e-9),
                max_size=max_size,
                deliverable_gpu_hours=max_size * pool.gpus_per_node * period_hours * target_utilisation,
                stack_min_size=pool.min_size,
                stack_max_size=pool.max_size,
                stack_capacity_gpu_hours=pool.max_size * pool.gpus_per_node * period_hours,
            )
        )

    granted_by_source = {source: 0 for source in funding}
    for g in grants:
        for source, amount in g.funding_krw.items():
            granted_by_source[source] = granted_by_source.get(source, 0) + amount
    granted_krw = sum(g.krw for g in grants)
    return Plan(
        region=stack.region.id,
        period_start=start,
        period_end=end,
        period_hours=period_hours,
        target_utilisation=target_utilisation,
        budget_krw=budget_krw,
        granted_krw=granted_krw,
        unallocated_krw=budget_krw - granted_krw,
        pools=pools,
        grants=grants,
        funding=[
            FundingPlan(
                source=s,
                budget_krw=funding.get(s, 0),
                granted_krw=granted_by_source.get(s, 0),
                unallocated_krw=funding.get(s, 0) - granted_by_source.get(s, 0),
            )
            for s in sorted(set(funding) | set(granted_by_source))
        ],
    )


# -- rendering ----------------------------------------------------------------------------
def won(amount: float) -> str:
    return f"{amount:,.0f}"


def render_plan(plan: Plan) -> str:
    head = (
        f"region {plan.region}: fiscal period {plan.period_start} .. {plan.period_end} ({plan.period_hours:,.0f} h), "
        f"budget {won(plan.budget_krw)} KRW, granted {won(plan.granted_krw)} KRW, unallocated "
        f"{won(plan.unallocated_krw)} KRW; target utilisation {plan.target_utilisation:.0%}"
    )
    pools = tables.render_table(
        [
            "POOL",
            "GPU",
            "PRICE",
            "KRW/GPU-H",
            "BUDGET BUYS GPU-H",
            "GRANTED GPU-H",
            "AVG GPUS",
            "MIN",
            "MAX",
            "STACK MIN..MAX",
            "DELIVERABLE GPU-H",
        ],
        [
            [
                p.pool,
                f"{p.gpus_per_node}x {p.gpu_model}",
                p.price_id,
                won(p.loaded_gpu_hour_krw),
                won(p.budget_gpu_hours),
                won(p.granted_gpu_hours),
                f"{p.average_gpus_busy:.2f}",
                p.min_size,
                p.max_size,
                f"{p.stack_min_size}..{p.stack_max_size}" + (" (short)" if p.stack_falls_short else ""),
                won(p.deliverable_gpu_hours),
            ]
            for p in plan.pools
        ],
        right=range(3, 11),
    )
    grants = tables.render_table(
        ["TENANT", "POOL", "GRANT KRW", "GPU-H", "SHARE", "COST ITEM"],
        [[g.tenant, g.pool, won(g.krw), won(g.gpu_hours), f"{g.share:.1%}", g.cost_item] for g in plan.grants],
        right=range(2, 5),
    )
    funding = tables.render_table(
        ["FUNDING", "BUDGET KRW", "GRANTED KRW", "UNALLOCATED KRW"],
        [[f.source, won(f.budget_krw), won(f.granted_krw), won(f.unallocated_krw)] for f in plan.funding],
        right=range(1, 4),
    )
    warnings = "".join(f"\nwarning: {w}" for w in plan.warnings())
    return f"{head}\n\n{pools}\n\n{grants}\n\n{funding}{warnings}"


def plot_plan(plan: Plan, path: str | Path) -> None:
    """Left: each pool's granted vs deliverable vs stack-capacity GPU-hours; right: the budget split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [p.pool for p in plan.pools]
    xs = range(len(names))
    width = 0.27
    left.bar([x - width for x in xs], [p.granted_gpu_hours for p in plan.pools], width, label="granted")
    left.bar(
        list(xs), [p.deliverable_gpu_hours for p in plan.pools], width, label=f"plan @ {plan.target_utilisation:.0%}"
    )
    left.bar([x + width for x in xs], [p.stack_capacity_gpu_hours for p in plan.pools], width, label="stack max, 100 %")
    left.set_xticks(list(xs), names)
    left.set_ylabel("GPU-hours in the period")
    left.legend(fontsize=8)
    left.set_title("GPU-hours per pool")
    labels = [g.tenant for g in plan.grants] + ["unallocated"]
    values = [g.krw for g in plan.grants] + [max(0, plan.unallocated_krw)]
    right.pie(values, labels=labels, textprops={"fontsize": 7}, autopct=lambda v: f"{v:.0f}%" if v >= 3 else "")
    right.set_title(f"budget {plan.budget_krw / 1e8:,.1f} x 100M KRW")
    fig.suptitle(f"Plan, region {plan.region} ({plan.period_start} .. {plan.period_end})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
