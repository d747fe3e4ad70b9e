"""Prometheus gauges of each tenant's grant in won, from the money ledger (built fresh on each scrape).

``testbed_tenant_{grant,charged,held,remaining}_krw``, the share of the grant charged, the burn rate
of the last 7 KST days and the forecast exhaustion time (:mod:`.burn`). Tenant is a label; region is
a target label. Alert rules on them are in ``rules.yaml`` (50/80/100% and forecast before the grant's end).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from operators.metering.burn import DAY, burn_of
from testbed.config import StackConfig

log = logging.getLogger(__name__)


class MoneyCollector(Collector):
    """Per-tenant money gauges (``*_krw``) for every configured tenant with a grant in won."""

    def __init__(self, money: Any, stack: StackConfig):
        self.money = money
        self.tenants = [t for t in stack.tenants if t.grant.krw is not None]

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

        grant = gauge("testbed_tenant_grant_krw", "The tenant's grant in won (supply amount, excl. VAT).")
        charged = gauge("testbed_tenant_charged_krw", "Won charged to the tenant's grant (charges, adjustments, opening).")
        held = gauge("testbed_tenant_held_krw", "Won held by the tenant's admitted, unfinished jobs.")
        remaining = gauge("testbed_tenant_remaining_krw", "Grant - charged - held, never below 0.")
        used = gauge("testbed_tenant_grant_krw_used_ratio", "Charged over granted won (1 = all used).")
        rate = gauge("testbed_tenant_burn_rate_krw_per_second", "Won charged per second over the last 7 Asia/Seoul days.")
        forecast = gauge("testbed_tenant_grant_krw_forecast_exhaustion_timestamp_seconds",
                         "When the remaining grant runs out at the last 7 days' burn rate (absent: nothing burns).")
        balances = self.money.balances(now, tenants=[t.id for t in self.tenants])
        for tenant in self.tenants:
            balance = balances.get(tenant.id)
            if balance is None or balance.grant_krw is None:
                continue
            burn = burn_of(self.money, tenant, balance, now)
            labels = [tenant.id]
            grant.add_metric(labels, balance.grant_krw)
            charged.add_metric(labels, balance.charged_krw)
            held.add_metric(labels, balance.held_krw)
            remaining.add_metric(labels, balance.remaining_krw or 0)
            used.add_metric(labels, burn.used_ratio or 0.0)
            rate.add_metric(labels, (burn.burn_rate_krw_per_day or 0.0) / DAY)
            if burn.forecast_exhaustion_timestamp is not None:
                forecast.add_metric(labels, burn.forecast_exhaustion_timestamp)
        return [grant, charged, held, remaining, used, rate, forecast]
