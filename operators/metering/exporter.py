"""Prometheus exposition of the ledger, built fresh on each scrape by custom collectors.

Allocated use (``testbed_tenant_*``, from job requests) and observed use (``testbed_node_*``, from
the host the control plane runs on: the Ray node in local mode) are separate metrics. Region is a
target label set by the scrape config; only ``testbed_tenant_info`` carries it as an info label.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Iterator, NamedTuple

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from operators.control_plane.db.ledger import STATUSES, Ledger, TenantMeter
from testbed.config import StackConfig

log = logging.getLogger(__name__)


class _TenantFacts(NamedTuple):
    """What the exposition needs from a configured tenant (constants of the stack file)."""

    name: str
    industry: str
    grant_seconds: float | None
    start: float
    end: float
    gpu_model: str


class TenantUsageCollector(Collector):
    """Per-tenant allocated use, jobs and grants, plus the exporter's own health."""

    def __init__(self, ledger: Ledger, stack: StackConfig):
        self.ledger = ledger
        self.region = stack.region.id
        self.errors = 0
        self.configured = {
            t.id: _TenantFacts(
                t.name,
                t.industry,
                t.grant.gpu_seconds,
                t.grant.start_timestamp,
                t.grant.end_timestamp,
                stack.pool_for(t).gpu_model,
            )
            for t in stack.tenants
        }

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; collect() reads the database

    def collect(self) -> Iterator[Metric]:
        began = time.perf_counter()
        try:
            families = self._tenant_families(time.time())
        except Exception:  # a scrape must still answer: report the failure as a metric
            log.exception("metering scrape failed")
            self.errors += 1
            families = []
        yield from families
        yield GaugeMetricFamily(
            "testbed_exporter_scrape_duration_seconds",
            "Time the metering exporter took to read the ledger and build the tenant metrics of this scrape.",
            value=time.perf_counter() - began,
        )
        yield CounterMetricFamily(
            "testbed_exporter_scrape_errors_total",
            "Scrapes whose tenant metrics could not be built (database errors).",
            value=self.errors,
        )

    def _tenant_families(self, now: float) -> list[Metric]:
        meters = self.ledger.snapshot(now)
        configured = self.configured
        # Tenants removed from the stack file keep their (historic) usage series.
        tenants = sorted(configured.keys() | meters.keys())

        info = GaugeMetricFamily(
            "testbed_tenant_info", "Tenant metadata (value 1).", labels=["tenant", "name", "region", "industry"]
        )
        cpu = CounterMetricFamily(
            "testbed_tenant_cpu_requested_seconds",
            "CPU-seconds requested by the tenant's jobs while they ran.",
            labels=["tenant"],
        )
        gpu = CounterMetricFamily(
            "testbed_tenant_gpu_allocated_seconds",
            "GPU-seconds allocated to the tenant's jobs, by GPU model.",
            labels=["tenant", "gpu_model"],
        )
        memory = CounterMetricFamily(
            "testbed_tenant_memory_requested_byte_seconds",
            "Byte-seconds of memory requested by the tenant's jobs while they ran.",
            labels=["tenant"],
        )
        jobs = GaugeMetricFamily(
            "testbed_tenant_jobs", "The tenant's jobs by current status.", labels=["tenant", "status"]
        )
        grant = GaugeMetricFamily(
            "testbed_tenant_grant_gpu_seconds", "GPU-seconds granted to the tenant.", labels=["tenant"]
        )
        used = GaugeMetricFamily(
            "testbed_tenant_grant_used_ratio",
            "Allocated GPU-seconds over granted GPU-seconds (1 = all used).",
            labels=["tenant"],
        )
        start = GaugeMetricFamily(
            "testbed_tenant_grant_start_timestamp_seconds", "Start of the tenant's grant.", labels=["tenant"]
        )
        end = GaugeMetricFamily(
            "testbed_tenant_grant_end_timestamp_seconds", "End of the tenant's grant.", labels=["tenant"]
        )

        region = self.region
        for tenant_id in tenants:
            meter = meters.get(tenant_id) or TenantMeter(tenant_id)
            tenant = configured.get(tenant_id)
            cpu.add_metric([tenant_id], meter.cpu_seconds)
            memory.add_metric([tenant_id], meter.memory_byte_seconds)
            gpu_seconds = dict(meter.gpu_seconds)
            if not gpu_seconds and tenant is not None:  # a zero series on the tenant's pool, so rules see it
                gpu_seconds[tenant.gpu_model] = 0.0
            for model, seconds in sorted(gpu_seconds.items()):
                gpu.add_metric([tenant_id, model], seconds)
            for status in STATUSES:
                jobs.add_metric([tenant_id, status], meter.jobs.get(status, 0))
            if tenant is None:
                continue
            info.add_metric([tenant_id, tenant.name, region, tenant.industry], 1)
            if tenant.grant_seconds:  # a grant in won only has no GPU-hour cap
                grant.add_metric([tenant_id], tenant.grant_seconds)
                used.add_metric([tenant_id], meter.gpu_seconds_total / tenant.grant_seconds)
            start.add_metric([tenant_id], tenant.start)
            end.add_metric([tenant_id], tenant.end)
        return [info, cpu, gpu, memory, jobs, grant, used, start, end]


class NodeUtilizationCollector(Collector):
    """Observed use of the host the control plane runs on (the Ray node in local mode).

    Not tenant usage and never mixed into it: in a cluster, observed GPU use comes from the DCGM
    exporter and node CPU from node-exporter.
    """

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self.node = socket.gethostname()
        psutil.cpu_percent(interval=None)  # prime: the next call measures since now

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        cpu = GaugeMetricFamily(
            "testbed_node_cpu_utilization_ratio",
            "Observed CPU utilisation of the node since the last scrape (0-1).",
            labels=["node"],
        )
        cpu.add_metric([self.node], self._psutil.cpu_percent(interval=None) / 100.0)
        memory = GaugeMetricFamily(
            "testbed_node_memory_utilization_ratio", "Observed memory in use on the node (0-1).", labels=["node"]
        )
        memory.add_metric([self.node], self._psutil.virtual_memory().percent / 100.0)
        yield cpu
        yield memory


class TenantMoneyCollector(Collector):
    """Per-tenant money from the money ledger (whole won, excluding VAT): granted, charged, held, remaining."""

    def __init__(self, money: Any):
        self.money = money

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            balances = self.money.balances(time.time())
        except Exception:  # the usage collector reports scrape errors; money is left out of this scrape
            log.exception("money scrape failed")
            return
        grant = GaugeMetricFamily(
            "testbed_tenant_grant_krw", "The tenant's grant in KRW (excl. VAT).", labels=["tenant"]
        )
        charged = CounterMetricFamily(
            "testbed_tenant_charged_krw",
            "KRW charged to the tenant (openings, charges, adjustments).",
            labels=["tenant"],
        )
        held = GaugeMetricFamily(
            "testbed_tenant_held_krw", "KRW still held by the tenant's unfinished jobs.", labels=["tenant"]
        )
        remaining = GaugeMetricFamily(
            "testbed_tenant_remaining_krw", "Grant - charged - held, never below 0.", labels=["tenant"]
        )
        for tenant, balance in sorted(balances.items()):
            charged.add_metric([tenant], balance.charged_krw)
            held.add_metric([tenant], balance.held_krw)
            if balance.grant_krw is not None:
                grant.add_metric([tenant], balance.grant_krw)
                remaining.add_metric([tenant], balance.remaining_krw or 0)
        yield from (grant, charged, held, remaining)


def make_registry(
    ledger: Ledger, stack: StackConfig, observe_node: bool = True, money: Any = None
) -> CollectorRegistry:
    """A per-app registry (never the global one) holding the metering collectors (``money``: the MoneyLedger)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TenantUsageCollector(ledger, stack))
    if money is not None:
        registry.register(TenantMoneyCollector(money))
        from operators.metering.money_exporter import BurnCollector

        registry.register(BurnCollector(money))  # share charged, burn rate, forecast (testbed_tenant_*_krw_*)
    if observe_node:
        registry.register(NodeUtilizationCollector())
    return registry


# What /metrics answers: prometheus_client's text format 0.0.4 writer. A hand-written writer was
# timed against it on 1,000 tenants (tests/benchmarks/bench_exposition.py): 1.6-1.9x faster, under
# the 2x that would pay for keeping a second writer of the format, so the library writes it.
TEXT_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
