"""The reconciler's money round: charge running jobs, release holds at a grant's or the budget's end, and decide
which running jobs must stop (max run time; in ``stop`` mode exhaustion or the period's end) or be warned."""

from __future__ import annotations

from typing import Callable

from sqlalchemy import select

from operators.control_plane.db.ledger import running_until
from operators.control_plane.db.models import JobRow, MoneyLedgerRow
from operators.control_plane.db.money import Balance, MoneyLedger
from operators.control_plane.db.pricing import JobShape
from testbed.config import Tenant
from testbed.jobs import JobStatus
from testbed.money import Enforcement, LedgerKind, format_duration, won

WARN_RATIO = 0.9  # stop mode: a running job's message warns at 90% of the grant


def grant_end(money: MoneyLedger, tenant: Tenant) -> float:
    """When a tenant's grant stops: the end of its last day or of the budget's fiscal period, whichever is first."""
    end = tenant.grant.end_timestamp
    return min(end, money.stack.budget.end_timestamp) if money.stack.budget is not None else end


def release_ended(money: MoneyLedger, now: float) -> list[str]:
    """At a grant's or the budget's end, release the holds still live of its tenant's jobs; the job ids released.

    Running jobs go on per the mode (``verdicts``: ``stop`` stops them; ``admit-if-fits`` and ``warn`` let them
    run, still charged). Each release is written under the job's row lock and only once (any replica).
    """
    ended = {
        tenant.id: grant_end(money, tenant) for tenant in money.tenants.values() if now >= grant_end(money, tenant)
    }
    if not ended:
        return []
    t = MoneyLedgerRow
    released = select(t.job_id).where(t.tenant.in_(list(ended)), t.kind == LedgerKind.RELEASE.value)
    with money.store.session() as s:
        ids = list(
            s.scalars(
                select(t.job_id)
                .where(t.tenant.in_(list(ended)), t.kind == LedgerKind.HOLD.value, t.job_id.not_in(released))
                .order_by(t.id)
            )
        )
    out = []
    for job_id in ids:
        with money.store.write_session() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None:
                continue
            tenant = money.tenants[row.tenant]
            end_day = (
                tenant.grant.end
                if ended[row.tenant] == tenant.grant.end_timestamp
                else (money.stack.budget.fiscal_period.end if money.stack.budget is not None else tenant.grant.end)
            )
            if money.release(
                s,
                row,
                now,
                f"grant of {row.tenant!r} ended on {end_day} (Asia/Seoul): the rest of the job's hold released",
            ):
                out.append(job_id)
    return out


def accrue_running(money: MoneyLedger, now: float, until_of: Callable[[JobRow], float] | None = None) -> int:
    """Charge every running job up to where the control plane last saw it (one transaction per job); won charged."""
    total = 0
    with money.store.session() as s:
        ids = list(
            s.scalars(select(JobRow.id).where(JobRow.status == JobStatus.RUNNING.value, JobRow.started_at.is_not(None)))
        )
    for job_id in ids:
        with money.store.write_session() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None or row.status != JobStatus.RUNNING.value:
                continue
            until = until_of(row) if until_of is not None else running_until(row.last_seen_at, now)
            total += money.accrue(s, row, until, now)
    return total


def verdicts(money: MoneyLedger, running: list[JobRow], now: float) -> tuple[dict[str, str], dict[str, str]]:
    """(job id -> why it must stop, job id -> warning) for running jobs: max run time, stop-mode exhaustion,
    the end of the grant or the budget."""
    stops: dict[str, str] = {}
    warnings: dict[str, str] = {}
    balances: dict[str, Balance] = {}
    for row in running:
        if row.started_at is None:
            continue
        shape = JobShape.of(row)
        if shape.max_runtime_seconds and now - row.started_at >= shape.max_runtime_seconds:
            stops[row.id] = (
                f"stopped: reached its maximum run time of {format_duration(shape.max_runtime_seconds)} "
                f"(max_runtime_seconds {shape.max_runtime_seconds})"
            )
            continue
        tenant = money.tenants.get(row.tenant)
        if tenant is None or tenant.grant.enforcement != Enforcement.STOP:
            continue
        grant = tenant.grant
        if now >= grant_end(money, tenant):
            stops[row.id] = f"stopped: tenant {tenant.id!r}'s grant period ended on {grant.end} (enforcement stop)"
            continue
        if row.tenant not in balances:
            with money.store.session() as s:
                balances[row.tenant] = money.read_balance(s, row.tenant)
        bal = balances[row.tenant]
        if grant.krw is not None and bal.charged_krw >= grant.krw:
            stops[row.id] = (
                f"stopped: grant exhausted: charged {won(bal.charged_krw)} of {won(grant.krw)} (enforcement stop)"
            )
        elif grant.gpu_seconds is not None and row.gpus and bal.charged_gpu_seconds >= grant.gpu_seconds:
            stops[row.id] = (
                f"stopped: GPU-hours exhausted: charged {bal.charged_gpu_seconds / 3600:.2f} of "
                f"{grant.gpu_hours:g} GPU-hours (enforcement stop)"
            )
        elif grant.krw and bal.charged_krw >= WARN_RATIO * grant.krw:
            warnings[row.id] = (
                f"warning: {bal.charged_krw / grant.krw:.0%} of the grant charged "
                f"({won(bal.charged_krw)} of {won(grant.krw)}); running jobs stop at 100%"
            )
    return stops, warnings
