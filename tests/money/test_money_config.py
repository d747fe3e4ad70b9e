"""Money in the stack file (prices, budget, grants) and the core helpers (KST days, rounding, durations)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction

import pytest

from testbed.config import LOCAL_POOL, REGIONS, ConfigError, load_region, load_stack_file
from testbed.money import (
    KST,
    FundingSource,
    Meter,
    Rates,
    day_start_ts,
    exact_cost,
    format_duration,
    kst_date,
    kst_month,
    parse_duration,
    round_half_up,
)
from tests.stack_files import REAL_STACK_DIR
from tests.testbed.test_config import write


@pytest.mark.parametrize("region", REGIONS)
def test_every_region_has_sample_prices_budget_and_grants_that_fit(region):
    stack = load_region(region, REAL_STACK_DIR)
    assert stack.budget is not None and stack.budget.sample
    assert 6_000_000_000 <= stack.budget.funding[FundingSource.NATIONAL] <= 8_000_000_000
    assert stack.prices and all(p.sample and p.source.startswith("sample:") for p in stack.prices)
    pools = {p.pool for p in stack.prices}
    assert LOCAL_POOL in pools and {p.name for p in stack.node_pools} <= pools
    for source in FundingSource:
        granted = sum(t.grant.share_krw(source) for t in stack.tenants)
        assert granted <= stack.budget.funding.get(source, 0)
    assert all(t.grant.krw and t.grant.krw > 0 for t in stack.tenants)


def test_price_for_picks_the_row_in_force_on_the_kst_day():
    stack = load_region("gyeongnam")
    first, cut = stack.price_rows("l4-pool")
    assert (first.gpu_hour_krw, cut.gpu_hour_krw) == (2800, 2600)
    # 2026-09-01 00:00 KST is 2026-08-31 15:00 UTC: the new row is in force from then, not from UTC midnight.
    boundary = dt.datetime(2026, 8, 31, 15, 0, tzinfo=dt.timezone.utc)
    assert stack.price_for("l4-pool", boundary - dt.timedelta(seconds=1)).id == "l4-pool@2026-03-01"
    assert stack.price_for("l4-pool", boundary).id == "l4-pool@2026-09-01"
    with pytest.raises(KeyError, match="no price for pool 'l4-pool' on 2026-02-28"):
        stack.price_for("l4-pool", dt.datetime(2026, 2, 28, 12, tzinfo=KST))


def test_grant_periods_are_asia_seoul_days():
    grant = load_region("jeju", REAL_STACK_DIR).tenants[0].grant
    assert grant.start_timestamp == dt.datetime(2026, 2, 28, 15, tzinfo=dt.timezone.utc).timestamp()
    assert grant.end_timestamp == dt.datetime(2027, 2, 28, 15, tzinfo=dt.timezone.utc).timestamp()


def _over_budget(config):
    for tenant in config["testbed:tenants"]:
        tenant["grant"]["krw"] = 4_000_000_000


@pytest.mark.parametrize(
    ("edit", "path", "reason"),
    [
        (
            _over_budget,
            "config.testbed:budget.funding.national",
            "the grants' national shares total 9,600,000,000 KRW (hallasan-citrus-foods 2,400,000,000",
        ),
        (_over_budget, "config.testbed:budget.funding.national", "more than the budget's 7,000,000,000 KRW by"),
        (
            lambda c: c["testbed:tenants"][0]["grant"].update(funding_shares={"national": 0.7, "local": 0.2}),
            "config.testbed:tenants[0].grant",
            "must be non-negative and sum to 1, not 0.9",
        ),
        (
            lambda c: c["testbed:tenants"][0]["grant"].update(cost_item="marketing"),
            "config.testbed:tenants[0].grant.cost_item",
            "'development', 'demonstration' or 'dissemination'",
        ),
        (
            lambda c: c["testbed:tenants"][0]["grant"].update(enforcement="pray"),
            "config.testbed:tenants[0].grant.enforcement",
            "'admit-if-fits', 'stop' or 'warn'",
        ),
        (
            lambda c: c["testbed:tenants"][0]["grant"].update(krw=-1),
            "config.testbed:tenants[0].grant.krw",
            "greater than or equal to 0",
        ),
        (
            lambda c: c["testbed:prices"][0].update(gpu_hour_krw=12.5),
            "config.testbed:prices[0].gpu_hour_krw",
            "valid integer",
        ),
        (
            lambda c: c["testbed:prices"][0].update(pool="tpu-pool"),
            "config.testbed:prices",
            "[0].pool 'tpu-pool' is not one of the node pools",
        ),
        (
            lambda c: c["testbed:prices"].append(dict(c["testbed:prices"][0])),
            "config.testbed:prices",
            "duplicate price row 'l4-pool@2026-03-01'",
        ),
        (
            lambda c: c.update({"testbed:prices": [p for p in c["testbed:prices"] if p["pool"] != "local"]}),
            "config.testbed:prices",
            "no row for pool 'local' in force by 2027-02-28",
        ),
        (
            lambda c: c["testbed:budget"].update(vat_rate=1.5),
            "config.testbed:budget.vat_rate",
            "less than or equal to 1",
        ),
        (
            lambda c: c["testbed:budget"]["funding"].update(provincial=5),
            "config.testbed:budget.funding.provincial.[key]",
            "'national', 'local' or 'self'",
        ),
        (
            lambda c: c["testbed:tenants"][1]["grant"].update(end="2027-06-30"),
            "config.testbed:tenants[1].grant",
            "outside the fiscal period 2026-03-01 to 2027-02-28",
        ),
        (lambda c: c.pop("testbed:budget"), "config.testbed:budget", "is required when a grant is in won"),
        (
            lambda c: c["testbed:tenants"][0]["quota"].update(max_runtime_seconds=0),
            "config.testbed:tenants[0].quota.max_runtime_seconds",
            "greater than or equal to 1",
        ),
    ],
)
def test_money_errors_name_file_key_path_and_reason(tmp_path, edit, path, reason):
    bad = write(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_stack_file(bad)
    lines = str(err.value).splitlines()
    assert any(line.startswith(f"{bad}: {path}:") and reason in line for line in lines), lines


@pytest.mark.integration  # runs the CLI in a process of its own
def test_cli_validate_refuses_grants_above_the_budget_naming_the_numbers(tmp_path):
    bad = write(tmp_path, _over_budget)
    result = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "config", "validate", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        f"{bad}: config.testbed:budget.funding.national: the grants' national shares total 9,600,000,000 KRW"
        in result.stderr
    )
    assert "more than the budget's 7,000,000,000 KRW by" in result.stderr


def test_kst_days_and_months():
    # 2026-03-31 15:00 UTC is already April 1st in Seoul.
    ts = dt.datetime(2026, 3, 31, 15, 0, tzinfo=dt.timezone.utc).timestamp()
    assert kst_date(ts) == dt.date(2026, 4, 1) and kst_month(ts) == "2026-04"
    assert kst_date(ts - 1) == dt.date(2026, 3, 31) and kst_month(ts - 1) == "2026-03"
    assert day_start_ts(dt.date(2026, 4, 1)) == ts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(5, 2), 3),
        (Fraction(3, 2), 2),
        (Fraction(-5, 2), -3),
        (Fraction(7, 3), 2),
        (Fraction(8, 3), 3),
        (Decimal("0.5"), 1),
        (Decimal("1.49999"), 1),
        (Fraction(0), 0),
        (Fraction(1, 2) - Fraction(1, 10**12), 0),
    ],
)
def test_round_half_up(value, expected):
    assert round_half_up(value) == expected


def test_exact_cost_worked_example():
    # 1 GPU, 4 CPUs, 16 GiB for 1,234 s at 2,800 / 45 / 6 KRW per hour (docs/money.md computes it by hand):
    meter = Meter.of(cpus=4, gpus=1, memory_bytes=16 * 2**30, seconds=1234)
    assert meter == Meter(cpu_milli_seconds=4_936_000, gpu_seconds=1234, memory_mib_seconds=16384 * 1234)
    cost = exact_cost(meter, Rates(gpu_hour_krw=2800, cpu_hour_krw=45, gib_hour_krw=6))
    assert cost == Fraction(2800 * 1234, 3600) + Fraction(45 * 4 * 1234, 3600) + Fraction(6 * 16 * 1234, 3600)
    assert cost == Fraction(1234 * 3076, 3600)  # 1054.3988... won
    assert round_half_up(cost) == 1054


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("45", 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "0m", "-5s", "2w", "1.5h", "soon"])
def test_bad_durations_say_what_a_duration_is(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
