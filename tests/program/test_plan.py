"""testbed plan: the arithmetic against a hand-checked region, the CLI, and the Pulumi warning under the mocks."""

from __future__ import annotations

from tests.stack_files import REAL_STACK_DIR

import copy
import json
from pathlib import Path

import pytest
import yaml

from testbed.cli.main import main
from testbed.config import REGIONS, stack_config_from_mapping
from testbed.plan import make_plan
from tests.infra.harness import load_stack_document, run_region

SMALL_POOL = {
    "name": "l4-pool",
    "gpu_model": "l4",
    "gpus_per_node": 4,
    "cpus_per_node": 48,
    "memory_per_node": "192Gi",
    "instance_types": ["g6.12xlarge"],
    "min_size": 0,
    "max_size": 2,
}


def hand_checked_document(max_size: int = 2) -> dict:
    """One L4 pool (4 GPUs, 48 CPUs, 192 GiB), 2,800 / 45 / 6 KRW per GPU-, CPU-, GiB-hour; 10 bn KRW; two grants."""
    document = copy.deepcopy(load_stack_document("gyeongnam"))
    config = document["config"]
    config["testbed:nodePools"] = [{**SMALL_POOL, "max_size": max_size}]
    local = [row for row in config["testbed:prices"] if row["pool"] == "local"]  # the embedded testbed's prices
    config["testbed:prices"] = [
        *local,
        {
            "pool": "l4-pool",
            "effective_from": "2026-03-01",
            "gpu_hour_krw": 2800,
            "cpu_hour_krw": 45,
            "gib_hour_krw": 6,
            "source": "test",
            "sample": True,
        },
    ]
    config["testbed:budget"] = {
        "fiscal_period": {"start": "2026-03-01", "end": "2027-02-28"},
        "vat_rate": 0.1,
        "funding": {"national": 7_000_000_000, "local": 3_000_000_000, "self": 0},
    }
    a, b = copy.deepcopy(config["testbed:tenants"][:2])
    a.update(
        gpu_pool="l4-pool",
        quota={**a["quota"], "gpus": 8},
        grant={
            "krw": 362_800_000,
            "gpu_hours": 50_000,
            "start": "2026-03-01",
            "end": "2027-02-28",
            "funding_shares": {"national": 0.6, "local": 0.4},
            "cost_item": "development",
        },
    )
    b.update(
        gpu_pool="l4-pool",
        quota={**b["quota"], "gpus": 2},
        grant={
            "krw": 36_280_000,
            "start": "2026-03-01",
            "end": "2026-08-31",
            "funding_shares": {"national": 1.0},
            "cost_item": "demonstration",
        },
    )
    config["testbed:tenants"] = [a, b]
    return document


def test_plan_arithmetic_matches_the_hand_checked_case() -> None:
    stack = stack_config_from_mapping(hand_checked_document()["config"])
    plan = make_plan(stack, target_utilisation=0.7)
    [pool] = plan.pools
    # node-hour: 4 x 2,800 + 48 x 45 + 192 x 6 = 11,200 + 2,160 + 1,152 = 14,512; loaded GPU-hour 14,512 / 4 = 3,628
    assert (pool.node_hour_krw, pool.loaded_gpu_hour_krw) == (14_512, 3_628)
    assert plan.period_hours == 365 * 24 == 8_760
    assert pool.budget_gpu_hours == pytest.approx(10_000_000_000 / 3_628)  # 2,756,339.6
    a, b = plan.grants
    assert a.gpu_hours == 50_000  # the GPU-hour cap is reached before 362.8 M / 3,628 = 100,000 h
    assert b.gpu_hours == pytest.approx(10_000)  # 36.28 M / 3,628, no cap
    # average GPUs busy: 50,000 / 8,760 + 10,000 / (184 days x 24 = 4,416) = 5.7078 + 2.2645 = 7.9723
    assert pool.average_gpus_busy == pytest.approx(50_000 / 8_760 + 10_000 / 4_416)
    assert pool.max_size == 3  # ceil(7.9723 / (0.7 x 4)) = ceil(2.847); the largest quota (8 GPUs) needs only 2
    assert pool.min_size == 1  # floor(7.9723 / 4)
    assert pool.deliverable_gpu_hours == pytest.approx(3 * 4 * 8_760 * 0.7)  # 73,584
    assert pool.granted_gpu_hours == pytest.approx(60_000)
    assert (plan.budget_krw, plan.granted_krw, plan.unallocated_krw) == (10_000_000_000, 399_080_000, 9_600_920_000)
    assert (a.share, b.share) == (pytest.approx(0.03628), pytest.approx(0.003628))
    funding = {f.source: f for f in plan.funding}
    assert funding["national"].granted_krw == 217_680_000 + 36_280_000
    assert funding["national"].unallocated_krw == 6_746_040_000
    assert (funding["local"].granted_krw, funding["local"].unallocated_krw) == (145_120_000, 2_854_880_000)
    assert plan.warnings() == []  # 2 nodes x 4 GPUs x 8,760 h = 70,080 >= 60,000
    # a higher target utilisation needs fewer nodes: ceil(7.9723 / (0.95 x 4)) = 3, at 1.0: ceil(1.993) = 2
    assert make_plan(stack, target_utilisation=1.0).pools[0].max_size == 2


def test_a_pool_that_cannot_deliver_the_grants_is_warned() -> None:
    stack = stack_config_from_mapping(hand_checked_document(max_size=1)["config"])
    [warning] = make_plan(stack).warnings()
    assert "'l4-pool'" in warning and "60,000" in warning and "35,040" in warning and "at least 3" in warning


@pytest.mark.parametrize("region", REGIONS)
def test_testbed_plan_cli_for_every_sample_region(region: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TESTBED_STACK_DIR", str(REAL_STACK_DIR))  # about the five real stack files
    png = tmp_path / "plan.png"
    assert main(["plan", "--region", region, "--json", "--plot", str(png)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["region"] == region and plan["budget_krw"] > 0 and plan["pools"]
    assert plan["unallocated_krw"] == plan["budget_krw"] - sum(g["krw"] for g in plan["grants"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_testbed_plan_refuses_bad_input_in_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "Pulumi.jeju.yaml"
    document = load_stack_document("jeju")
    del document["config"]["testbed:budget"]
    bad.write_text(yaml.safe_dump(document))
    for argv, needle in (
        (["--stack-file", str(bad)], "testbed:budget"),
        (["--region", "jeju", "--target-utilisation", "1.5"], "within (0, 1]"),
        ([], "--region"),
    ):
        try:
            code = main(["plan", *argv])
        except SystemExit as exc:  # argparse's own refusal of a bad value
            code = exc.code
        err = capsys.readouterr().err
        assert code != 0 and needle in err and "Traceback" not in err, err


def test_pulumi_warns_when_the_pools_cannot_deliver_the_granted_hours() -> None:
    short = run_region("gyeongnam", hand_checked_document(max_size=1))
    assert any("'l4-pool'" in w and "at least 3" in w for w in short.warnings), short.warnings
    # the sample stacks' pools suffice: tests/infra/test_infra_tenants.py holds them to no warning at all


def test_the_worked_example_in_the_docs_is_what_testbed_plan_prints() -> None:
    from testbed.config import load_stack_file
    from testbed.plan import render_plan

    docs = Path(__file__).resolve().parents[2] / "docs" / "program-office"
    plan = make_plan(load_stack_file(docs / "example-7bn.yaml"))
    assert plan.budget_krw == 7_000_000_000 and plan.unallocated_krw == 500_000_000
    page = (docs / "plan.md").read_text(encoding="utf-8")
    rendered = render_plan(plan).splitlines()
    pool_lines = [line for line in rendered if line.startswith(("l4-pool ", "h100-pool ", "national ", "warning:"))]
    assert len(pool_lines) == 4 and all(line in page for line in pool_lines)
    assert [p.max_size for p in plan.pools] == [45, 5] and [p.min_size for p in plan.pools] == [31, 2]
