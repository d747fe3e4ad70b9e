"""Prometheus gauges of each tenant's burn-down in won, from the money ledger (built fresh on each scrape).

The share of the grant charged, the burn rate of the last 7 KST days and the forecast exhaustion time
(:mod:`.burn`), beside the exporter's ``testbed_tenant_{grant,charged,held,remaining}_krw``. Tenant is a
label; region is a target label. Alert rules on them are in ``rules.yaml`` (50/80/100% and forecast before
the grant's end).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from operators.metering.burn import DAY, burn_of

log = logging.getLogger(__name__)


class BurnCollector(Collector):
    """Per-tenant burn-down gauges for every configured tenant with a grant in won (``money.tenants``)."""

    def __init__(self, money: Any):
        self.money = money

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._families(time.time())
        except Exception:  # the usage collector reports scrape errors; these gauges are then absent
            log.exception("money gauges failed")

    def _families(self, now: float) -> list[Metric]:
        def gauge(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=["tenant"])

        used = gauge("testbed_tenant_grant_krw_used_ratio", "Charged over granted won (1 = all used).")
        rate = gauge(
            "testbed_tenant_burn_rate_krw_per_second", "Won charged per second over the last 7 Asia/Seoul days."
        )
        forecast = gauge(
            "testbed_tenant_grant_krw_forecast_exhaustion_timestamp_seconds",
            "When the remaining grant runs out at the last 7 days' burn rate (absent: nothing burns).",
        )
        tenants = [t for t in self.money.tenants.values() if t.grant.krw is not None]
        balances = self.money.balances(now, tenants=[t.id for t in tenants])
        for tenant in tenants:
            balance = balances.get(tenant.id)
            if balance is None or balance.grant_krw is None:
                continue
            burn = burn_of(self.money, tenant, balance, now)
            labels = [tenant.id]
            used.add_metric(labels, burn.used_ratio or 0.0)
            rate.add_metric(labels, (burn.burn_rate_krw_per_day or 0.0) / DAY)
            if burn.forecast_exhaustion_timestamp is not None:
                forecast.add_metric(labels, burn.forecast_exhaustion_timestamp)
        return [used, rate, forecast]
