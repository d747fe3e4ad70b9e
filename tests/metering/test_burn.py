"""Burn-down in won: the last 7 KST days' rate and the forecast in /v1/usage, `testbed usage` and /metrics; the
company told at 80% and 100% (job messages, `testbed usage`)."""

from __future__ import annotations

import pytest

import datetime as dt
import subprocess
import sys
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from operators.control_plane.db.models import MoneyLedgerRow
from operators.metering.burn import grant_notice
from testbed.client import TestbedClient
from testbed.money import TenantBalance, kst_date
from tests.replicas import issued_token

ALICE = "changwon-precision"  # grant 180,000,000 KRW, admit-if-fits


def adjust(plane, tenant: str, amount: int, at: float) -> None:
    """An adjusting entry in the tenant's ledger (what an operator's correction writes)."""
    with plane.store.write_session() as s:
        s.add(
            MoneyLedgerRow(
                at=at,
                tenant=tenant,
                job_id=None,
                kind="adjustment",
                amount_krw=amount,
                pool=None,
                price_id=None,
                seconds=0,
                note="test: usage before this test",
            )
        )


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
def test_burn_rate_forecast_and_the_80_percent_notice(noop_plane):
    now = time.time()
    adjust(noop_plane.plane, ALICE, 150_000_000, now - 2 * 86400)
    adjust(noop_plane.plane, ALICE, 9_000_000, now - 30 * 86400)  # outside the 7-day window: not in the rate
    operator = noop_plane.client("operator")
    [alice] = operator.usage(tenant=ALICE).tenants
    assert 150_000_000 / 7 <= alice.burn_rate_krw_per_day <= 150_000_000 / 6
    assert abs(alice.used_ratio - 159_000_000 / 180_000_000) < 1e-9
    days_left = alice.remaining_krw / alice.burn_rate_krw_per_day
    assert alice.forecast_exhaustion_date == kst_date(now + days_left * 86400)
    assert alice.forecast_exhaustion_date < alice.grant_end  # the forecast falls before the grant's end
    assert alice.grant_notice and "88%" in alice.grant_notice
    others = [t for t in operator.usage().tenants if t.tenant != ALICE]
    assert all(
        t.burn_rate_krw_per_day == 0 and t.forecast_exhaustion_date is None and not t.grant_notice for t in others
    )

    job = noop_plane.client(ALICE).submit({"entrypoint": "true", "cpus": 1, "max_runtime_seconds": 60})
    assert "지원금 88% 사용 (grant 88% used)" in job.message, job.message
    shown = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "usage", "--url", noop_plane.url, "--token", noop_plane.token(ALICE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0 and f"! {ALICE}: 지원금 88% 사용" in shown.stdout, shown.stderr
    assert alice.forecast_exhaustion_date.isoformat() in shown.stdout

    scrape = httpx.get(
        f"{noop_plane.url}/metrics", headers={"Authorization": f"Bearer {noop_plane.token('operator')}"}
    ).text
    samples = {
        (s.name, s.labels.get("tenant")): s.value for f in text_string_to_metric_families(scrape) for s in f.samples
    }
    assert samples[("testbed_tenant_grant_krw", ALICE)] == 180_000_000
    assert samples[("testbed_tenant_charged_krw_total", ALICE)] >= 159_000_000
    assert abs(samples[("testbed_tenant_grant_krw_used_ratio", ALICE)] - alice.used_ratio) < 1e-3
    assert abs(samples[("testbed_tenant_burn_rate_krw_per_second", ALICE)] * 86400 - alice.burn_rate_krw_per_day) < 1000
    forecast = samples[("testbed_tenant_grant_krw_forecast_exhaustion_timestamp_seconds", ALICE)]
    assert kst_date(forecast) == alice.forecast_exhaustion_date


def test_notices_at_80_and_100_percent():
    def balance(charged: int) -> TenantBalance:
        return TenantBalance(tenant="t", grant_krw=1000, charged_krw=charged, remaining_krw=max(1000 - charged, 0))

    assert grant_notice(balance(799)) is None
    assert "80%" in grant_notice(balance(800)) and "200 KRW remaining" in grant_notice(balance(800))
    assert grant_notice(balance(1000)).startswith("지원금 소진 (grant used up)")
    assert grant_notice(TenantBalance(tenant="t", grant_krw=None)) is None


def test_the_window_starts_six_kst_days_before_today_or_at_the_grant_start():
    from operators.metering.burn import window_start
    from testbed.money import day_start_ts

    now = day_start_ts(dt.date(2026, 5, 10)) + 3600
    assert window_start(now, dt.date(2026, 3, 1)) == day_start_ts(dt.date(2026, 5, 4))
    assert window_start(now, dt.date(2026, 5, 8)) == day_start_ts(dt.date(2026, 5, 8))


@pytest.mark.integration  # serves the API over HTTP
def test_a_submitted_jobs_answer_is_what_reading_it_back_says(tmp_path):
    """``POST /v1/jobs`` answers from what its admission read and wrote, with no read of its own: the same job,
    hold and grant notice (whose remaining won count every hold so far) as the job list says right after, for jobs
    handed to the backend and for those that wait for room (the quota runs 4 at a time; no sync here)."""
    from tests.conftest import make_noop_app
    from tests.serve import serve_in_thread

    app = make_noop_app(tmp_path, sync=False)
    adjust(app.state.plane, ALICE, 150_000_000, time.time() - 86400)  # 83% charged: the notice shows
    with (
        serve_in_thread(app) as url,
        TestbedClient(url, issued_token(tmp_path, ALICE)) as alice,
    ):
        answers = [
            alice.submit({"entrypoint": "true", "cpus": 1, "gpus": i % 2, "max_runtime_seconds": 600 * (i + 1)})
            for i in range(6)
        ]
        assert [job.status for job in answers] == ["PENDING"] * 6
        assert sum(job.message.startswith("queued: tenant") for job in answers) == 2  # waiting for room
        assert all(job.hold_krw > 0 and "지원금 83% 사용" in job.message for job in answers)
        remaining = [int(job.message.split(" KRW charged, ")[1].split(" KRW")[0].replace(",", "")) for job in answers]
        assert all(a - b == job.hold_krw for a, b, job in zip(remaining, remaining[1:], answers[1:]))
        read = {job.id: job for job in alice.list_jobs().jobs}  # as recorded (a GET would refresh them first)
        read = [read[job.id] for job in answers]
        assert read[-1] == answers[-1]  # the last, notice and all

        # the others: the same but for the notice's remaining won, which later holds lowered
        def without_notice(job):
            return job.model_copy(update={"message": job.message.split("지원금")[0]})

        assert [without_notice(job) for job in answers] == [without_notice(job) for job in read]
