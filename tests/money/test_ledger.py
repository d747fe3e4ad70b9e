"""The money ledger on SQLite and PostgreSQL, time driven by a clock parameter (no sleeps).

Every expected amount below is computed by hand in the comments (docs/money.md has the rule).
"""

from __future__ import annotations

import datetime as dt

import pytest

from operators.control_plane.db import migrate
from operators.control_plane.db.models import JobRow, MoneyLedgerRow
from operators.control_plane.db import money_rounds
from operators.control_plane.db.money import MoneyLedger
from operators.control_plane.db.pricing import price_pieces
from operators.control_plane.db.store import Store
from operators.control_plane.db.ledger import fold_jobs
from testbed.config import LOCAL_POOL, load_region, pricing_pool
from testbed.money import KST, LedgerKind, round_half_up

GIB = 2**30
STACK = load_region("gyeongnam")
TENANT = "changwon-precision"  # grant 180,000,000 KRW, 1,200 GPU-hours, admit-if-fits
# 2026-10-05 10:00 KST: the local price row of 2026-03-01 is in force (2,800 GPU / 45 CPU / 6 GiB per hour).
T0 = dt.datetime(2026, 10, 5, 10, 0, tzinfo=KST).timestamp()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'cp.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store(url)
    yield store
    store.close()


def money_for(store: Store, backend: str = "noop") -> MoneyLedger:
    money = MoneyLedger(store, STACK, lambda tenant: pricing_pool(STACK, tenant, backend))
    money.install()
    return money


def running_job(
    store: Store,
    job_id: str,
    started_at: float,
    max_runtime: int,
    cpus: float = 4,
    gpus: int = 1,
    memory: int = 16 * GIB,
) -> JobRow:
    return store.add_job(
        JobRow(
            id=job_id,
            tenant=TENANT,
            region="gyeongnam",
            name="m",
            experiment=f"{TENANT}/m",
            status="RUNNING",
            entrypoint="true",
            spec={"max_runtime_seconds": max_runtime},
            cpus=cpus,
            gpus=gpus,
            gpu_model="l4",
            memory_bytes=memory,
            submitted_at=started_at - 5,
            started_at=started_at,
            dispatched=True,
        )
    )


def charges(money: MoneyLedger, job_id: str) -> list[tuple[int, str, int]]:
    return [
        (e.amount_krw, e.price_id or "", e.seconds) for e in money.entries(job_id=job_id, kinds=[LedgerKind.CHARGE])
    ]


def test_charges_are_exact_to_the_won_hold_and_release(store):
    money = money_for(store)
    from operators.control_plane.db.pricing import JobShape

    # 4 CPUs, 1 GPU, 16 GiB at local 2,800 + 4 x 45 + 16 x 6 = 3,076 KRW per hour.
    shape = JobShape(cpus=4, gpus=1, memory_bytes=16 * GIB, max_runtime_seconds=7200)
    tenant = STACK.tenant(TENANT)
    hold = money.hold_for(tenant, shape, T0)
    assert (hold.krw, hold.price_id, hold.gpu_seconds) == (6152, "local@2026-03-01", 7200)  # 2 h x 3,076
    running_job(store, "job-exact", T0, 7200)
    money.record_hold("job-exact", TENANT, hold, shape, T0)
    assert money.balance(TENANT).held_krw == 6152

    money_rounds.accrue_running(money, T0 + 61.9, until_of=lambda row: T0 + 61.9)  # 61 s: 61 x 3076/3600 = 52.12 -> 52
    money_rounds.accrue_running(money, T0 + 61.9, until_of=lambda row: T0 + 61.9)  # nothing new: charged once
    money_rounds.accrue_running(money, T0 + 125, until_of=lambda row: T0 + 125)  # 125 s: 106.81 -> 107, so +55
    assert [c[0] for c in charges(money, "job-exact")] == [52, 55]
    balance = money.balance(TENANT)
    assert (balance.charged_krw, balance.held_krw) == (107, 6152 - 107)
    assert balance.remaining_krw == 180_000_000 - 6152

    store.update_job("job-exact", status="SUCCEEDED", ended_at=T0 + 3601.7)  # settles in the same transaction
    # 3,601 whole seconds: 3601 x 3076 / 3600 = 3076.854... -> 3,077 won in all
    amounts = [c[0] for c in charges(money, "job-exact")]
    assert amounts == [52, 55, 3077 - 107] and sum(amounts) == round_half_up(
        __import__("fractions").Fraction(3601 * 3076, 3600)
    )
    assert sum(c[2] for c in charges(money, "job-exact")) == 3601
    release = money.entries(job_id="job-exact", kinds=[LedgerKind.RELEASE])
    assert [e.amount_krw for e in release] == [6152 - 3077]
    balance = money.balance(TENANT)
    assert (balance.charged_krw, balance.held_krw, balance.remaining_krw) == (3077, 0, 180_000_000 - 3077)
    assert balance.charged_gpu_hours == pytest.approx(3601 / 3600)


def test_a_price_change_mid_job_charges_each_interval_at_its_price(store):
    # In a cluster the tenant's l4-pool is priced: 2,800 until 2026-08-31, 2,600 from 2026-09-01 00:00 KST.
    money = money_for(store, backend="kuberay")
    boundary = dt.datetime(2026, 9, 1, 0, 0, tzinfo=KST).timestamp()
    start = boundary - 600  # 23:50 KST: 600 s at 3,076/h, then 600 s at 2,600 + 180 + 96 = 2,876/h
    running_job(store, "job-price", start, 3600)
    money_rounds.accrue_running(money, start + 300, until_of=lambda row: start + 300)  # 300 x 3076/3600 = 256.33 -> 256
    money_rounds.accrue_running(money, start + 900, until_of=lambda row: start + 900)
    # to 600 s: 512.67 -> 513 (+257); then 300 s at 2,876: 512.67 + 239.67 = 752.33 -> 752 (+239)
    store.update_job("job-price", status="SUCCEEDED", ended_at=start + 1200)
    # the last 300 s: 752.33 + 239.67 = 992 exactly (+240)
    assert charges(money, "job-price") == [
        (256, "l4-pool@2026-03-01", 300),
        (257, "l4-pool@2026-03-01", 300),
        (239, "l4-pool@2026-09-01", 300),
        (240, "l4-pool@2026-09-01", 300),
    ]
    assert money.balance(TENANT).charged_krw == 992


def test_price_pieces_split_on_the_kst_day_boundary():
    boundary = dt.datetime(2026, 9, 1, 0, 0, tzinfo=KST).timestamp()
    pieces = price_pieces(STACK, "l4-pool", boundary - 10.5, 0, 30)
    # second k is priced at its start: seconds 0..10 start before the boundary (k=10 starts at -0.5 s)
    assert [(p.price.id, p.start, p.end) for p in pieces] == [
        ("l4-pool@2026-03-01", 0, 11),
        ("l4-pool@2026-09-01", 11, 30),
    ]


def test_a_job_is_never_charged_past_its_max_run_time_and_is_told_to_stop(store):
    money = money_for(store)
    running_job(store, "job-max", T0, 90, cpus=1, gpus=1, memory=2 * GIB)  # 2,800 + 45 + 12 = 2,857 KRW/h
    rows = store.list_jobs()
    stops, _ = money_rounds.verdicts(money, rows, T0 + 89)
    assert stops == {}
    stops, _ = money_rounds.verdicts(money, rows, T0 + 90)
    assert stops["job-max"].startswith("stopped: reached its maximum run time of 90s")
    money_rounds.accrue_running(money, T0 + 200, until_of=lambda row: T0 + 200)
    store.update_job("job-max", status="STOPPED", ended_at=T0 + 200)
    # 90 s, not 200: 90 x 2857 / 3600 = 71.425 -> 71
    assert charges(money, "job-max") == [(71, "local@2026-03-01", 90)]


def test_stop_mode_stops_running_jobs_at_exhaustion_with_a_warning_at_90_percent(tmp_path):
    import yaml

    from testbed.config import load_stack_file, stack_file_for

    document = yaml.safe_load(stack_file_for("gyeongnam").read_text())
    document["config"]["testbed:tenants"][0]["grant"].update(krw=1000, enforcement="stop")
    path = tmp_path / "Pulumi.gyeongnam.yaml"
    path.write_text(yaml.safe_dump(document))
    stack = load_stack_file(path)
    store = Store(f"sqlite:///{tmp_path / 'cp.db'}")
    try:
        money = MoneyLedger(store, stack, lambda tenant: LOCAL_POOL)
        money.install()
        running_job(store, "job-stop", T0, 86400)  # 3,076 KRW/h: 1,000 won after 1170.3 s
        money_rounds.accrue_running(money, T0 + 1060, until_of=lambda row: T0 + 1060)  # 905.7 -> 906: 90.6%
        stops, warnings = money_rounds.verdicts(money, store.list_jobs(), T0 + 1060)
        assert stops == {} and warnings["job-stop"].startswith(
            "warning: 91% of the grant charged (906 KRW of 1,000 KRW)"
        )
        money_rounds.accrue_running(money, T0 + 1171, until_of=lambda row: T0 + 1171)  # 1000.57 -> 1,001
        stops, _ = money_rounds.verdicts(money, store.list_jobs(), T0 + 1171)
        assert stops["job-stop"] == "stopped: grant exhausted: charged 1,001 KRW of 1,000 KRW (enforcement stop)"
        balance = money.balance(TENANT)
        assert balance.remaining_krw == 0 and balance.overspend_krw == 0
    finally:
        store.close()


@pytest.mark.integration  # PostgreSQL too
def test_opening_entries_equal_todays_usage_times_the_price(tmp_path, request):
    for dialect in ("sqlite", "postgresql"):
        url = f"sqlite:///{tmp_path / 'open.db'}" if dialect == "sqlite" else request.getfixturevalue("postgres_url")
        migrate.upgrade(url, revision="0002_replicas")  # the schema before money
        old = Store(url, migrate=False)
        try:
            # today's usage, folded by the metering ledger's own fold (the jobs table of that schema lacks columns
            # that later revisions add, so the finished jobs are handed to the fold as they were recorded)
            with old.write_session() as s:
                jobs = [
                    ("job-a1", "changwon-precision", 2, 1, 4 * GIB, 3600),  # 2,800 + 2 x 45 + 4 x 6 = 2,914
                    ("job-a2", "changwon-precision", 1, 0, 1 * GIB, 1800),  # (45 + 6) / 2 = 25.5
                    ("job-b1", "gimhae-robotics", 1, 0, 1 * GIB, 100),  # 51 x 100 / 3600 = 1.4167
                ]
                fold_jobs(
                    s,
                    [
                        JobRow(
                            id=job_id,
                            tenant=tenant,
                            status="SUCCEEDED",
                            cpus=cpus,
                            gpus=gpus,
                            gpu_model="l4",
                            memory_bytes=memory,
                            started_at=T0,
                            ended_at=T0 + seconds,
                        )
                        for job_id, tenant, cpus, gpus, memory, seconds in jobs
                    ],
                )
        finally:
            old.close()
        prices = migrate.opening_prices(STACK, "noop", now=T0)
        assert migrate.upgrade(url, opening_prices=prices) == ("0002_replicas", migrate.head_revision())
        store = Store(url, migrate=False)
        try:
            money = MoneyLedger(store, STACK, lambda tenant: LOCAL_POOL)
            openings = {e.tenant: e for e in money.entries(kinds=[LedgerKind.OPENING])}
            # changwon: 2,914 + 25.5 = 2,939.5 -> 2,940; gimhae: 1.4167 -> 1
            assert {t: e.amount_krw for t, e in openings.items()} == {"changwon-precision": 2940, "gimhae-robotics": 1}
            a = openings["changwon-precision"]
            assert (a.gpu_seconds, a.cpu_milli_seconds, a.memory_mib_seconds) == (
                3600,
                2000 * 3600 + 1000 * 1800,
                4096 * 3600 + 1024 * 1800,
            )
            assert a.price_id == "local@2026-03-01" and a.job_id is None
            assert money.balance("changwon-precision").charged_krw == 2940
            assert money.balance("changwon-precision").charged_gpu_hours == pytest.approx(1.0)
            # the ledger is append-only: a second start adds no opening entries
            migrate.upgrade(url, opening_prices=prices)
            assert len(money.entries(kinds=[LedgerKind.OPENING])) == 2
            with store.session() as s:
                assert s.query(MoneyLedgerRow).count() == 2
        finally:
            store.close()


def test_an_amended_grant_takes_effect_at_reload_and_live_holds_are_rechecked(tmp_path):
    import yaml

    from tests.conftest import make_noop_app

    document = yaml.safe_load((__import__("testbed.config", fromlist=["x"]).stack_file_for("gyeongnam")).read_text())
    stack_file = tmp_path / "Pulumi.gyeongnam.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    app = make_noop_app(tmp_path, stack_file=stack_file, sync=False)
    plane = app.state.plane
    from operators.control_plane.auth import Principal
    from testbed.jobs import JobSpec

    alice = Principal(subject=TENANT, role="tenant")
    spec = JobSpec(entrypoint="sleep 600", gpus=1, cpus=1, memory=2**30, max_runtime_seconds=3600)  # holds 2,851
    first, second = plane.admit(alice, spec), plane.admit(alice, spec)  # queued, never dispatched (no sync)
    assert plane.money.balance(TENANT).held_krw == 2 * 2851
    assert plane.reload_if_changed() == []  # unchanged file: nothing to do
    document["config"]["testbed:tenants"][0]["grant"]["krw"] = 4000  # amended: room for one hold, not two
    stack_file.write_text(yaml.safe_dump(document))
    actions = plane.reload_stack()
    assert actions == [
        f"grant of {TENANT} amended",
        f"queued job {second.id} of {TENANT} stopped: its hold no longer fits the amended grant",
    ]
    assert plane.store.get_job(second.id).status == "STOPPED"
    assert "amended grant (4,000 KRW) no longer covers" in plane.store.get_job(second.id).message
    assert plane.store.get_job(first.id).status == "PENDING"
    balance = plane.money.balance(TENANT)
    assert (balance.grant_krw, balance.held_krw, balance.remaining_krw) == (4000, 2851, 4000 - 2851)
    quote = plane.quote(alice, spec)
    assert not quote.fits and quote.refusal == "grant_insufficient" and "grant 4,000 KRW" in quote.reason
    document["config"]["testbed:tenants"][0]["grant"]["krw"] = -5  # a bad file is refused, the config kept
    stack_file.write_text(yaml.safe_dump(document))
    assert plane.reload_stack()[0].startswith("refused: ") and plane.money.balance(TENANT).grant_krw == 4000
    plane.shutdown()
