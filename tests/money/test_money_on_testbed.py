"""Money on the real local testbed (Ray with 2 logical GPUs, MLflow, the control plane): max run time, quote,
templates on logical GPUs, balances in `testbed usage`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction

import pytest

from testbed.money import round_half_up
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
TENANT = "geoje-marine-welding"  # gyeongnam, quota 2 GPUs; its own grant, so other tests' jobs do not matter
# pool local: 2,800 per GPU-hour + 45 per CPU-hour + 6 per GiB-hour; 1 GPU, 1 CPU, 2 GiB = 2,857 KRW per hour
PER_HOUR = 2800 + 45 + 2 * 6


def cli(local_testbed, *args: str) -> subprocess.CompletedProcess:
    env = {**local_testbed.env(), "TESTBED_TOKEN": local_testbed.tokens[TENANT]}
    result = subprocess.run(
        [sys.executable, "-m", "testbed.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def wait_ended(client, job_id: str, timeout: float = 120):
    return wait_until(
        lambda: (job := client.get_job(job_id)).status in ("SUCCEEDED", "FAILED", "STOPPED") and job,
        timeout,
        f"{job_id} to end",
    )


def test_a_gpu_job_is_stopped_at_its_max_run_time_and_charged_exactly(local_testbed):
    client = local_testbed.client(TENANT)
    quote = client.quote(entrypoint="sleep 120", gpus=1, cpus=1, memory="2Gi", max_runtime_seconds=5)
    assert (quote.hold_krw, quote.price_id, quote.fits) == (
        round_half_up(Fraction(5 * PER_HOUR, 3600)),
        "local@2026-03-01",
        True,
    )  # 5 x 2857/3600 = 3.97 -> 4
    job = client.submit(entrypoint="sleep 120", gpus=1, cpus=1, memory="2Gi", max_runtime_seconds=5)
    assert job.hold_krw == quote.hold_krw and job.max_runtime_seconds == 5
    ended = wait_ended(client, job.id)
    assert ended.status == "STOPPED", ended
    assert ended.message.startswith("stopped: reached its maximum run time of 5s"), ended.message
    # charged for exactly its 5 seconds, never the seconds it took to stop: 5 x 2857 / 3600 = 3.968 -> 4 won
    assert ended.charged_krw == round_half_up(Fraction(5 * PER_HOUR, 3600)) == 4
    usage = json.loads(cli(local_testbed, "usage", "--json").stdout)["tenants"][0]
    assert usage["tenant"] == TENANT and usage["grant_krw"] == 90_000_000
    assert usage["charged_krw"] >= 4 and usage["remaining_krw"] == 90_000_000 - usage["charged_krw"] - usage["held_krw"]


def test_submit_quote_and_max_runtime_on_the_cli(local_testbed):
    quoted = cli(
        local_testbed,
        "submit",
        "--quote",
        "--gpus",
        "1",
        "--cpus",
        "1",
        "--memory",
        "2Gi",
        "--max-runtime",
        "2h",
        "--",
        "python",
        "train.py",
    )
    assert quoted.returncode == 0, quoted.stderr
    # 2 h x 2,857 = 5,714 won
    assert quoted.stdout.startswith("hold 5,714 KRW for at most 2h at local@2026-03-01; balance "), quoted.stdout
    assert quoted.stdout.rstrip().endswith(": fits")
    too_long = cli(local_testbed, "submit", "--quote", "--max-runtime", "2d", "--", "true")
    assert too_long.returncode != 0
    assert (
        "max_runtime_seconds: 172800 (2d) is above tenant 'geoje-marine-welding''s cap of 86400 (1d)" in too_long.stderr
    )
    bad = cli(local_testbed, "submit", "--max-runtime", "soon", "--", "true")
    assert bad.returncode != 0 and "--max-runtime: 'soon' is not a duration" in bad.stderr
    listed = json.loads(cli(local_testbed, "jobs", "list", "--json").stdout)
    assert all(j["name"] != "train" for j in listed["jobs"])  # a quote submits nothing


def test_a_template_trains_on_the_cpu_with_logical_gpus(local_testbed):
    client = local_testbed.client(TENANT)
    job = client.submit(template="predictive-maintenance", params={"epochs": 1}, gpus=1, cpus=1)
    ended = wait_ended(client, job.id, timeout=240)
    logs = client.logs(job.id).logs
    assert ended.status == "SUCCEEDED", logs[-2000:]
    assert "1 logical GPU(s) and no CUDA here: training on the CPU" in logs
    # its spec (1 GPU, 1 CPU, 2 GiB) for its whole seconds (the API's times are to the millisecond)
    seconds = {math.floor(_seconds(ended) + d) for d in (-0.001, 0.001)}
    assert ended.charged_krw in {round_half_up(Fraction(n * PER_HOUR, 3600)) for n in seconds}
    assert ended.charged_krw > 0


def _seconds(job) -> float:
    import datetime as dt

    parse = lambda text: dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()  # noqa: E731
    return parse(job.ended_at) - parse(job.started_at)
