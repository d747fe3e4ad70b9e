"""A real Prometheus scraping a control plane (no-op backend): PromQL agrees with the ledger."""

from __future__ import annotations

import time

import pytest

from operators.metering import build_report
from testbed.config import StackConfig
from tests.waiting import wait_until

from .helpers import add_job


def test_promql_agrees_with_the_ledger(noop_plane, prometheus, stack: StackConfig) -> None:
    first, second = stack.tenants[0], stack.tenants[1]
    t0 = first.grant.start_timestamp + 3600
    store = noop_plane.plane.store
    add_job(store, first.id, "SUCCEEDED", started=t0, ended=t0 + 7200, cpus=3, gpus=1, gpu_model="l4")
    add_job(store, second.id, "FAILED", started=t0, ended=t0 + 600, cpus=2, gpus=2, gpu_model="a100")
    ledger = noop_plane.app.state.metering_ledger
    report = {t.tenant: t for t in build_report(ledger, noop_plane.plane.stack).tenants}

    with prometheus(noop_plane.url, token=noop_plane.token("operator")) as prom:
        prom.wait_for_scrape(after=time.time())
        assert prom.value('up{job="testbed-control-plane"}') == 1
        for tenant in (first.id, second.id):
            expected = report[tenant]
            assert prom.value("testbed_tenant_cpu_requested_seconds_total", tenant=tenant) == pytest.approx(
                expected.cpu_seconds
            )
            assert prom.value(
                "sum by (tenant) (testbed_tenant_gpu_allocated_seconds_total)", tenant=tenant
            ) == pytest.approx(expected.gpu_seconds)
            assert prom.value("testbed_tenant_grant_used_ratio", tenant=tenant) == pytest.approx(
                expected.grant_used_ratio
            )
        # region: a target label on every series, and the info label of testbed_tenant_info
        assert {s["metric"].get("region") for s in prom.query("testbed_tenant_cpu_requested_seconds_total")} == {
            "gyeongnam"
        }
        info = prom.query(f'testbed_tenant_info{{tenant="{first.id}"}}')
        assert info[0]["metric"]["region"] == "gyeongnam" and info[0]["metric"]["name"] == first.name
        # the recording rules run against the real scrape (each rule group on its own schedule)
        recorded = ("tenant:testbed_tenant_gpu_allocated_seconds:sum", "tenant:testbed_tenant_grant_used:ratio")
        wait_until(
            lambda: all(prom.value(name, tenant=second.id) is not None for name in recorded),
            20,
            "the recording rules to evaluate",
            every=0.5,
        )
        assert prom.value("tenant:testbed_tenant_gpu_allocated_seconds:sum", tenant=first.id) == pytest.approx(7200)
        assert prom.value("tenant:testbed_tenant_grant_used:ratio", tenant=second.id) == pytest.approx(
            report[second.id].grant_used_ratio
        )
