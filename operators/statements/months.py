"""Closing months: a closed month's statement rows are frozen in the database and never change.

``statement_months`` holds one row per closed month (when, by whom, the newest ledger entry it
includes, the frozen rows' digest); ``statement_rows`` the frozen :class:`TenantStatement` of each
tenant as canonical JSON. Closing runs under every tenant's lock (no ledger write of any tenant is
in flight, on any replica) and writes its audit row in the same transaction. A ledger entry written
after its month closed counts in the next month still open (:mod:`.compute`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from contextlib import ExitStack
from decimal import Decimal
from typing import Callable, Sequence

from sqlalchemy import func, select

from operators.control_plane import audit
from operators.control_plane.audit import AuditKind, canonical_json
from operators.control_plane.auth import Principal
from testbed.errors import ErrorCode
from operators.control_plane.errors import ServiceError, not_found
from operators.control_plane.db.models import JobRow, StatementMonthRow, StatementRowRow
from operators.control_plane.db.store import Store
from operators.statements.compute import month_start, next_month, tenant_statement
from testbed.config import StackConfig
from testbed.money import KST, LedgerEntry, kst_month
from testbed.statements import MonthClosed, Statement, TenantStatement, check_month

EntrySource = Callable[[], Sequence[LedgerEntry]]  # every ledger entry, oldest first


def month_end_ts(month: str) -> float:
    """00:00 KST of the first day after the month."""
    return dt.datetime.combine(month_start(next_month(month)), dt.time(), KST).timestamp()


def frozen_text(statement: TenantStatement) -> str:
    return canonical_json(statement.model_dump(mode="json"))


class Statements:
    """One region's statements: computed from the ledger while a month is open, frozen once it is closed."""

    def __init__(self, stack: StackConfig, store: Store, entries: EntrySource):
        self.stack = stack
        self.store = store
        self.entries = entries

    def closes(self) -> dict[str, StatementMonthRow]:
        with self.store.session() as s:
            return {row.month: row for row in s.scalars(select(StatementMonthRow))}

    def compute(
        self,
        month: str,
        provisional: bool,
        closes: dict[str, int] | None = None,
        entries: Sequence[LedgerEntry] | None = None,
    ) -> list[TenantStatement]:
        """Every configured tenant's statement for ``month`` from the ledger as it is now."""
        closes = closes if closes is not None else {m: row.last_ledger_id for m, row in self.closes().items()}
        entries = list(self.entries()) if entries is None else entries
        idle = self.idle_gpu_hours(month)
        return [
            tenant_statement(self.stack, tenant, month, entries, closes, provisional).model_copy(
                update={"idle_gpu_hours": idle.get(tenant.id, Decimal(0))}
            )
            for tenant in self.stack.tenants
        ]

    def idle_gpu_hours(self, month: str) -> dict[str, Decimal]:
        """Tenant -> GPU-hours its jobs held idle, of the jobs last observed idle in ``month`` (KST; 6 decimals)."""
        try:
            start, end = dt.datetime.combine(month_start(month), dt.time(), KST).timestamp(), month_end_ts(month)
        except (ValueError, OverflowError):  # a month outside the calendar (year 0, 9999-12): no job was idle then
            return {}
        query = (
            select(JobRow.tenant, func.sum(JobRow.idle_gpu_seconds))
            .where(JobRow.idle_gpu_seconds > 0, JobRow.idle_checked_at >= start, JobRow.idle_checked_at < end)
            .group_by(JobRow.tenant)
        )
        with self.store.session() as s:
            return {
                tenant: (Decimal(seconds) / 3600).quantize(Decimal("0.000001")) for tenant, seconds in s.execute(query)
            }

    def statement(self, principal: Principal, month: str, tenant: str | None = None) -> Statement:
        """The month's statement of every tenant the caller may see (``tenant``: only that one; another's: 404)."""
        month = self._month(month)
        if tenant is not None and (
            not principal.can_read_accounts(tenant) or tenant not in {t.id for t in self.stack.tenants}
        ):
            raise not_found(f"tenant {tenant!r}")
        closed = self.closes().get(month)
        if closed is not None:
            with self.store.session() as s:
                frozen = [
                    TenantStatement.model_validate_json(row.data)
                    for row in s.scalars(
                        select(StatementRowRow).where(StatementRowRow.month == month).order_by(StatementRowRow.position)
                    )
                ]
        else:
            frozen = self.compute(month, provisional=True)
        visible = [
            st for st in frozen if principal.can_read_accounts(st.tenant) and (tenant is None or st.tenant == tenant)
        ]
        return Statement(
            month=month, provisional=closed is None, closed_at=closed.closed_at if closed else None, tenants=visible
        )

    def close(self, principal: Principal, month: str, now: float | None = None) -> MonthClosed:
        """Freeze ``month`` (operator): it must have ended, and every earlier month with ledger entries be closed."""
        if not principal.is_operator:
            raise ServiceError(ErrorCode.FORBIDDEN, "only the operator closes months")
        month = self._month(month)
        now = time.time() if now is None else now
        if now < month_end_ts(month):
            raise ServiceError(
                ErrorCode.MONTH_OPEN,
                f"month {month} has not ended yet (Asia/Seoul); close it from {next_month(month)}-01 00:00 KST",
            )
        with ExitStack() as locks:
            for tenant in sorted(t.id for t in self.stack.tenants):  # no ledger write in flight, on any replica
                session = locks.enter_context(self.store.tenant_lock(tenant))
            if not self.stack.tenants:
                session = locks.enter_context(self.store.lock("testbed:statements"))
            closed = {row.month: row.last_ledger_id for row in session.scalars(select(StatementMonthRow))}
            if month in closed:
                raise ServiceError(
                    ErrorCode.MONTH_CLOSED,
                    f"month {month} is already closed; a correction is an adjusting entry in the next open month",
                )
            entries = list(self.entries())
            earlier = sorted({kst_month(e.at) for e in entries if kst_month(e.at) < month} - closed.keys())
            if earlier:
                raise ServiceError(ErrorCode.MONTH_OPEN, f"close {earlier[0]} first: months close in order")
            statements = self.compute(month, provisional=False, closes=closed, entries=entries)
            last_id = max((e.id for e in entries), default=0)
            texts = [frozen_text(st) for st in statements]
            digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
            for position, (statement, text) in enumerate(zip(statements, texts)):
                session.add(StatementRowRow(month=month, tenant=statement.tenant, position=position, data=text))
            session.add(
                StatementMonthRow(
                    month=month, closed_at=now, closed_by=principal.actor, last_ledger_id=last_id, rows_sha256=digest
                )
            )
            audit.append(
                session,
                AuditKind.MONTH_CLOSED,
                actor=principal.actor,
                at=now,
                detail={
                    "month": month,
                    "last_ledger_id": last_id,
                    "rows_sha256": digest,
                    "supply_krw": sum(st.charged_krw for st in statements),
                },
            )
            session.flush()
        return MonthClosed(
            month=month,
            closed_at=now,
            closed_by=principal.actor,
            last_ledger_id=last_id,
            rows_sha256=digest,
            tenants=len(statements),
        )

    @staticmethod
    def _month(month: str) -> str:
        try:
            return check_month(month)
        except ValueError as exc:
            raise ServiceError(ErrorCode.INVALID_SPEC, str(exc)) from None
