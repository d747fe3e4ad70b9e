"""What the audit trail records about the stack file and admissions: grant, price and budget changes.

At every control-plane start the stack file's money section (each tenant's grant, the price table,
the budget) is compared with the last one recorded in the audit trail; each difference becomes a
``grant.changed`` / ``prices.changed`` / ``budget.changed`` row holding the value before and after.
Replicas starting together record a change once (a database lock around compare-and-append).
"""

from __future__ import annotations

import json
from typing import Any

from operators.control_plane import audit
from operators.control_plane.audit import AuditKind
from operators.control_plane.db.models import JobRow
from operators.control_plane.db.store import Store
from testbed.config import StackConfig


def admission_detail(row: JobRow) -> dict[str, Any]:
    """What an admission's audit row keeps of the job (no command line: it may carry secrets)."""
    detail: dict[str, Any] = {
        "cpus": row.cpus,
        "gpus": row.gpus,
        "memory_bytes": row.memory_bytes,
        "gpu_model": row.gpu_model,
        "template": row.template,
    }
    for key in ("max_runtime_seconds", "hold_krw", "pool"):
        value = (row.spec or {}).get(key, getattr(row, key, None))
        if value is not None:
            detail[key] = value
    return detail


def _plain(value: Any) -> Any:
    """A model (or list of models) as plain JSON values."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return json.loads(json.dumps(value, default=str))


def money_section(stack: StackConfig) -> dict[tuple[str, str | None], Any]:
    """(kind, tenant) -> the current value of each audited part of the stack file's money section."""
    parts: dict[tuple[str, str | None], Any] = {}
    for tenant in stack.tenants:
        parts[(AuditKind.GRANT_CHANGED, tenant.id)] = _plain(tenant.grant)
    prices = getattr(stack, "prices", None)  # the money contract's price table (absent before it)
    if prices is not None:
        parts[(AuditKind.PRICES_CHANGED, None)] = _plain(prices)
    budget = getattr(stack, "budget", None)
    if budget is not None:
        parts[(AuditKind.BUDGET_CHANGED, None)] = _plain(budget)
    return parts


def record_money_changes(store: Store, stack: StackConfig, actor: str = "stack-file") -> int:
    """Append a row for each part of the money section that differs from the last recorded; how many."""
    changed = 0
    with store.lock("testbed:audit-config") as session:
        for (kind, tenant), value in money_section(stack).items():
            last = audit.last_of(session, kind, tenant)
            before = json.loads(last.detail).get("after") if last is not None else None
            if before == value:
                continue
            audit.append(
                session,
                kind,
                tenant=tenant,
                actor=actor,
                detail={"region": stack.region.id, "before": before, "after": value},
            )
            changed += 1
    return changed
