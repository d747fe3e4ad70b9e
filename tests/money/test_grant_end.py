"""At a grant's (or the budget's) end date its live holds are released; running jobs go on per the mode.

Time is the ledger's clock parameter (no sleeps); SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest

from operators.control_plane.db.models import JobRow
from operators.control_plane.db import money_rounds
from operators.control_plane.db.money import MoneyLedger
from operators.control_plane.db.pricing import JobShape
from operators.control_plane.db.store import Store
from tests.stack_files import REAL_STACK_DIR
from testbed.config import load_region, pricing_pool
from testbed.money import Enforcement, LedgerKind

GIB = 2**30
STACK = load_region("gyeongnam", REAL_STACK_DIR)  # the real region: its sample prices and grants
TENANT = "changwon-precision"
SHAPE = JobShape(cpus=4, gpus=1, memory_bytes=16 * GIB, max_runtime_seconds=7200)  # 3,076 KRW/h locally, hold 6,152


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'cp.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store(url)
    yield store
    store.close()


def ledger(store: Store, mode: Enforcement) -> MoneyLedger:
    tenants = [
        t.model_copy(update={"grant": t.grant.model_copy(update={"enforcement": mode})}) if t.id == TENANT else t
        for t in STACK.tenants
    ]
    stack = STACK.model_copy(update={"tenants": tenants})
    money = MoneyLedger(store, stack, lambda tenant: pricing_pool(stack, tenant, "noop"))
    money.install()
    return money


def job(store: Store, money: MoneyLedger, job_id: str, at: float, status: str = "RUNNING") -> JobRow:
    row = store.add_job(
        JobRow(
            id=job_id,
            tenant=TENANT,
            region="gyeongnam",
            name="m",
            experiment=f"{TENANT}/m",
            status=status,
            entrypoint="true",
            spec={"max_runtime_seconds": SHAPE.max_runtime_seconds},
            cpus=SHAPE.cpus,
            gpus=SHAPE.gpus,
            gpu_model="l4",
            memory_bytes=SHAPE.memory_bytes,
            submitted_at=at - 5,
            started_at=at if status == "RUNNING" else None,
            dispatched=status == "RUNNING",
        )
    )
    money.record_hold(job_id, TENANT, money.hold_for(money.tenants[TENANT], SHAPE, at), SHAPE, at)
    return row


def amounts(money: MoneyLedger, job_id: str, kind: LedgerKind) -> list[int]:
    return [e.amount_krw for e in money.entries(job_id=job_id, kinds=[kind])]


@pytest.mark.parametrize("mode", [Enforcement.ADMIT_IF_FITS, Enforcement.WARN, Enforcement.STOP])
def test_holds_are_released_at_the_grant_end_and_running_jobs_follow_the_mode(store, mode):
    money = ledger(store, mode)
    end = money_rounds.grant_end(money, money.tenants[TENANT])  # the end of the grant's last day (Asia/Seoul)
    start = end - 1800  # half an hour before it
    running = job(store, money, "job-running", start)
    job(store, money, "job-queued", start, status="PENDING")
    assert money.balance(TENANT).held_krw == 2 * 6152

    assert money_rounds.release_ended(money, end - 1) == []  # the last second of the grant: nothing released
    money_rounds.accrue_running(money, end, until_of=lambda row: end)  # 1,800 s: 1800 x 3076 / 3600 = 1,538 won
    assert money_rounds.release_ended(money, end) == ["job-running", "job-queued"]
    assert amounts(money, "job-running", LedgerKind.RELEASE) == [6152 - 1538]
    assert amounts(money, "job-queued", LedgerKind.RELEASE) == [6152]
    assert money_rounds.release_ended(money, end + 60) == []  # once
    balance = money.balance(TENANT)
    assert (balance.held_krw, balance.charged_krw) == (0, 1538)

    stops, _ = money_rounds.verdicts(money, [store.get_job(running.id)], end)
    if mode == Enforcement.STOP:
        assert "grant period ended" in stops[running.id]
    else:  # admit-if-fits and warn: a running job is not stopped for money; it is still charged
        assert stops == {}
        money_rounds.accrue_running(
            money, end + 600, until_of=lambda row: end + 600
        )  # 2,400 s in all: 2,050.67 -> 2,051
        assert money.balance(TENANT).charged_krw == 2051
    store.update_job(running.id, status="STOPPED", ended_at=end + 600)  # settles: no second release
    assert len(amounts(money, "job-running", LedgerKind.RELEASE)) == 1
    assert money.balance(TENANT).held_krw == 0
