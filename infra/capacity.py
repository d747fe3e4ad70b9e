"""Tenant quota against pool capacity: over-commitment per resource and per GPU pool."""

from __future__ import annotations

import pulumi

from testbed.config import StackConfig


def report(stack: StackConfig) -> dict:
    """Ratios of summed tenant quota to maximum capacity (above 1.0 is over-committed)."""
    pools = {}
    for pool in stack.node_pools:
        tenants = [t for t in stack.tenants if stack.pool_for(t).name == pool.name]
        pools[pool.name] = {
            "gpus": round(sum(t.quota.gpus for t in tenants) / pool.max_gpus, 4),
            "cpus": round(sum(t.quota.cpus for t in tenants) / pool.max_cpus, 4),
            "memory": round(sum(t.quota.memory for t in tenants) / pool.max_memory, 4),
            "tenants": len(tenants),
        }
    totals = {k: round(v, 4) for k, v in stack.overcommitment().items()}
    over = sorted(
        {f"{name}.{r}" for name, ratios in pools.items() for r in ("gpus", "cpus", "memory") if ratios[r] > 1.0}
        | {f"region.{r}" for r, v in totals.items() if v > 1.0}
    )
    return {**totals, "pools": pools, "overcommitted": over}


def warn(stack: StackConfig, result: dict) -> None:
    for item in result["overcommitted"]:
        scope, _, resource = item.partition(".")
        ratio = result[resource] if scope == "region" else result["pools"][scope][resource]
        pulumi.log.warn(
            f"{stack.region.id}: tenant {resource} quota is {ratio:.2f}x the capacity of "
            f"{'the region' if scope == 'region' else 'pool ' + scope}; Kueue will queue jobs"
        )


def warn_plan(stack: StackConfig) -> list[str]:
    """Warn (``pulumi preview``/``up``) when the pools' max sizes cannot deliver the granted GPU-hours within the
    fiscal period (testbed/plan.py; a stack without a budget or prices is not planned)."""
    from testbed.plan import make_plan, plannable

    lines = [f"{stack.region.id}: {line}" for line in make_plan(stack).warnings()] if plannable(stack) else []
    for line in lines:
        pulumi.log.warn(line)
    return lines
