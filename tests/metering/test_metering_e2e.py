"""Metering on the real local testbed (Ray, MLflow, control plane), scraped by a real Prometheus."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.jobs import Job
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SLEEP = 'python -c "import time; time.sleep({seconds})"'
FAIL = 'python -c "import sys, time; time.sleep(1); sys.exit(3)"'
TOLERANCE = 0.02  # exposition within 2% of requested CPUs x run time
# The control plane bills from when it first sees a job running (one sync interval, 0.25 s, plus
# polling latency after the process starts), so a job's metered run time may trail its sleep a bit.
OBSERVATION_SLACK = 1.0


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def run_seconds(job: Job) -> float:
    return _epoch(job.ended_at) - _epoch(job.started_at)


def usage(testbed, tenant: str) -> dict[str, Any]:
    (row,) = testbed.operator_client().usage(tenant=tenant).tenants
    return row.model_dump(mode="json")


def operator_auth(testbed) -> dict[str, str]:
    """/metrics answers the operator token only."""
    return {"Authorization": f"Bearer {testbed.operator_token}"}


def exposed_cpu_seconds(testbed) -> dict[str, float]:
    text = httpx.get(f"{testbed.control_plane_url}/metrics", headers=operator_auth(testbed), timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "testbed_tenant_cpu_requested_seconds":
            return {s.labels["tenant"]: s.value for s in family.samples}
    raise AssertionError("no testbed_tenant_cpu_requested_seconds_total in /metrics")


def wait_running(client, job_id: str, timeout: float = 120) -> Job:
    def running() -> Job | None:
        job = client.get_job(job_id)
        assert job.status in ("PENDING", "RUNNING"), job
        return job if job.status == "RUNNING" else None

    return wait_until(running, timeout, f"{job_id} to start", every=0.2)


@pytest.fixture(scope="module")
def tenants(local_testbed) -> list[str]:
    # tenants the control-plane tests do not use, so their usage moves only with these tests
    return [t.id for t in local_testbed.stack.tenants][1:3]


@pytest.fixture(scope="module")
def metered(local_testbed, tenants) -> dict[str, Any]:
    """Two tenants' jobs: succeeded (both), failed (first), stopped (second); usage before and after."""
    a, b = tenants
    before = {t: usage(local_testbed, t) for t in tenants}
    ca, cb = local_testbed.client(a), local_testbed.client(b)
    ok_a = ca.submit({"entrypoint": SLEEP.format(seconds=3), "cpus": 1})
    ok_b = cb.submit({"entrypoint": SLEEP.format(seconds=3), "cpus": 1})
    wait_running(ca, ok_a.id)
    time.sleep(1.0)
    running_1 = usage(local_testbed, a)
    time.sleep(1.0)
    running_2 = usage(local_testbed, a)
    jobs = {"ok_a": ca.wait(ok_a.id, timeout=180), "ok_b": cb.wait(ok_b.id, timeout=180)}

    failed = ca.submit({"entrypoint": FAIL, "cpus": 1})
    stopped = cb.submit({"entrypoint": SLEEP.format(seconds=120), "cpus": 1})
    wait_running(cb, stopped.id)
    time.sleep(2.0)
    cb.stop(stopped.id)
    jobs["failed_a"] = ca.wait(failed.id, timeout=180)
    jobs["stopped_b"] = cb.wait(stopped.id, timeout=180)
    after = {t: usage(local_testbed, t) for t in tenants}
    return {"before": before, "after": after, "jobs": jobs, "running": (running_1, running_2), "tenants": tenants}


def test_finished_failed_and_stopped_jobs_are_metered(metered) -> None:
    jobs, before, after = metered["jobs"], metered["before"], metered["after"]
    a, b = metered["tenants"]
    assert [jobs[k].status for k in ("ok_a", "ok_b", "failed_a", "stopped_b")] == [
        "SUCCEEDED",
        "SUCCEEDED",
        "FAILED",
        "STOPPED",
    ]
    for key in ("ok_a", "ok_b"):
        assert 3.0 - OBSERVATION_SLACK <= run_seconds(jobs[key]) < 30, jobs[key]
    assert run_seconds(jobs["failed_a"]) > 0.5 and run_seconds(jobs["stopped_b"]) > 1.5
    for tenant, keys in ((a, ("ok_a", "failed_a")), (b, ("ok_b", "stopped_b"))):
        expected = sum(jobs[k].cpus * run_seconds(jobs[k]) for k in keys)
        assert after[tenant]["cpu_seconds"] - before[tenant]["cpu_seconds"] == pytest.approx(expected, rel=TOLERANCE)
        assert after[tenant]["jobs_total"] - before[tenant]["jobs_total"] == 2
    assert after[a]["jobs"]["FAILED"] - before[a]["jobs"]["FAILED"] == 1
    assert after[b]["jobs"]["STOPPED"] - before[b]["jobs"]["STOPPED"] == 1


def test_a_running_job_is_metered_while_it_runs(metered) -> None:
    first, second = metered["running"]
    assert first["jobs"]["RUNNING"] >= 1
    # one second apart; metering of a running job trails by up to a sync interval (0.25 s) each time
    assert second["cpu_seconds"] - first["cpu_seconds"] == pytest.approx(1.0, abs=0.75)


def test_exposition_matches_requested_cpus_times_run_time(local_testbed, metered, promtool) -> None:
    scrape = httpx.get(
        f"{local_testbed.control_plane_url}/metrics", headers=operator_auth(local_testbed), timeout=10
    ).content
    lint = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True, timeout=60)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr
    exposed = exposed_cpu_seconds(local_testbed)
    jobs = metered["jobs"]
    a, b = metered["tenants"]
    for tenant, keys in ((a, ("ok_a", "failed_a")), (b, ("ok_b", "stopped_b"))):
        expected = metered["before"][tenant]["cpu_seconds"] + sum(jobs[k].cpus * run_seconds(jobs[k]) for k in keys)
        assert exposed[tenant] == pytest.approx(expected, rel=TOLERANCE)


def test_prometheus_scraping_the_local_testbed_agrees_with_the_ledger(local_testbed, metered, prometheus) -> None:
    with prometheus(local_testbed.control_plane_url, token=local_testbed.operator_token) as prom:
        prom.wait_for_scrape(after=time.time())
        for tenant in metered["tenants"]:
            ledger = usage(local_testbed, tenant)
            assert prom.value("testbed_tenant_cpu_requested_seconds_total", tenant=tenant) == pytest.approx(
                ledger["cpu_seconds"], rel=1e-9
            )
            assert prom.value("sum by (tenant) (testbed_tenant_jobs)", tenant=tenant) == ledger["jobs_total"]
            assert prom.value('testbed_tenant_jobs{status="FAILED"}', tenant=tenant) == ledger["jobs"]["FAILED"]
        assert prom.value('up{job="testbed-control-plane"}') == 1
        assert prom.value("count(testbed_node_cpu_utilization_ratio)") == 1  # observed use, separate


def test_restart_of_the_control_plane_mid_job_loses_no_metered_time(local_testbed) -> None:
    tenant = local_testbed.stack.tenants[4].id
    before = usage(local_testbed, tenant)["cpu_seconds"]
    job = local_testbed.client(tenant).submit({"entrypoint": SLEEP.format(seconds=8), "cpus": 1})
    wait_running(local_testbed.client(tenant), job.id)
    time.sleep(1.0)
    crashed_at = time.time()
    local_testbed.restart_control_plane(crash=True)
    done = local_testbed.client(tenant).wait(job.id, timeout=180)
    assert done.status == "SUCCEEDED"
    assert _epoch(done.started_at) < crashed_at
    assert run_seconds(done) >= 8.0 - OBSERVATION_SLACK  # the whole sleep, across the restart
    after = usage(local_testbed, tenant)["cpu_seconds"]
    assert after - before == pytest.approx(done.cpus * run_seconds(done), rel=TOLERANCE)
    assert exposed_cpu_seconds(local_testbed)[tenant] == pytest.approx(after, rel=1e-9)


def test_testbed_usage_cli_on_the_local_testbed(local_testbed, metered, tmp_path) -> None:
    env = {**local_testbed.env(), "TESTBED_TOKEN": local_testbed.operator_token}
    settlement = tmp_path / "settlement.csv"
    result = subprocess.run(
        [sys.executable, "-m", "embedded.cli", "usage", "--json", "--csv", str(settlement)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {t["tenant"] for t in report["tenants"]} == {t.id for t in local_testbed.stack.tenants}
    assert settlement.read_text().count("\n") == 1 + len(local_testbed.stack.tenants)
    own = subprocess.run(
        [sys.executable, "-m", "embedded.cli", "usage"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**local_testbed.env(), "TESTBED_TOKEN": local_testbed.tokens[metered["tenants"][0]]},
    )
    assert own.returncode == 0 and metered["tenants"][0] in own.stdout and metered["tenants"][1] not in own.stdout
