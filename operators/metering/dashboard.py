"""Generate the Grafana dashboard ``dashboard.json`` (per-tenant GPU-hours, grant burn-down, jobs).

Run ``python -m operators.metering.dashboard`` after editing; a test checks the committed JSON is
this script's output and that every query names only metrics the exporter or the rules produce.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DASHBOARD_FILE = Path(__file__).with_name("dashboard.json")
SEL = '{region=~"$region", tenant=~"$tenant"}'
TENANT_LEGEND = "{{tenant}}"


def _target(expr: str, legend: str = TENANT_LEGEND, instant: bool = False, ref: str = "A") -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
    }
    if instant:
        target.update(instant=True, range=False, format="table")
    return target


def _panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    grid: tuple[int, int, int, int],
    unit: str = "short",
    description: str = "",
    **options: Any,
) -> dict[str, Any]:
    x, y, w, h = grid
    panel: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit, **options.pop("defaults", {})}, "overrides": []},
        "targets": targets,
    }
    panel.update(options)
    return panel


def _thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"thresholds": {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}}


def panels() -> list[dict[str, Any]]:
    stacked = {"custom": {"stacking": {"mode": "normal"}, "fillOpacity": 30}}
    grant_colours = _thresholds((None, "green"), (0.5, "yellow"), (0.8, "orange"), (1.0, "red"))
    return [
        _panel(
            "bargauge",
            "Grant used",
            [_target(f"tenant:testbed_tenant_grant_used:ratio{SEL}")],
            (0, 0, 8, 8),
            unit="percentunit",
            description="Allocated GPU-seconds over granted GPU-seconds (alerts at 50%, 80%, 100%).",
            defaults={"min": 0, "max": 1, **grant_colours},
            options={"orientation": "horizontal"},
        ),
        _panel(
            "timeseries",
            "GPU-hours used per tenant",
            [_target(f"tenant:testbed_tenant_gpu_allocated_seconds:sum{SEL} / 3600")],
            (8, 0, 8, 8),
            unit="h",
            description="Allocated (requested) GPU time, all GPU models.",
        ),
        _panel(
            "timeseries",
            "Grant burn-down: GPU-hours left",
            [
                _target(f"tenant:testbed_tenant_grant_remaining_gpu_seconds:max{SEL} / 3600"),
            ],
            (16, 0, 8, 8),
            unit="h",
        ),
        _panel(
            "timeseries",
            "GPUs allocated per tenant",
            [_target(f"tenant:testbed_tenant_gpu_allocated_seconds:rate5m{SEL}")],
            (0, 8, 8, 8),
            description="GPU-seconds per second over 5 minutes: the GPUs a tenant's jobs hold.",
            defaults=stacked,
        ),
        _panel(
            "timeseries",
            "CPUs requested per tenant",
            [_target(f"tenant:testbed_tenant_cpu_requested_seconds:rate5m{SEL}")],
            (8, 8, 8, 8),
            defaults=stacked,
        ),
        _panel(
            "timeseries",
            "Predicted grant use at grant end",
            [
                _target(f"tenant:testbed_tenant_grant_used:predicted_ratio_at_end{SEL}"),
            ],
            (16, 8, 8, 8),
            unit="percentunit",
            description="If the last 6 hours' burn continues (alert above 100%).",
            defaults=grant_colours,
        ),
        _panel(
            "timeseries",
            "Jobs by status",
            [
                _target(
                    f"sum by (status) (max by (region, tenant, status) (testbed_tenant_jobs{SEL}))", legend="{{status}}"
                ),
            ],
            (0, 16, 8, 8),
            defaults=stacked,
        ),
        _panel(
            "timeseries",
            "Queue: pending jobs per tenant",
            [_target(f"tenant:testbed_tenant_jobs_pending:max{SEL}")],
            (8, 16, 8, 8),
            defaults=stacked,
        ),
        _panel(
            "timeseries",
            "Job failure ratio (last hour)",
            [_target(f"tenant:testbed_tenant_jobs_failed:ratio1h{SEL}")],
            (16, 16, 8, 8),
            unit="percentunit",
            defaults={"min": 0, "max": 1},
        ),
        _panel(
            "table",
            "Usage per tenant",
            [
                _target(f"tenant:testbed_tenant_gpu_allocated_seconds:sum{SEL} / 3600", instant=True, ref="A"),
                _target(
                    f"max by (region, tenant) (testbed_tenant_cpu_requested_seconds_total{SEL}) / 3600",
                    instant=True,
                    ref="B",
                ),
                _target(f"tenant:testbed_tenant_grant_gpu_seconds:max{SEL} / 3600", instant=True, ref="C"),
                _target(f"tenant:testbed_tenant_grant_used:ratio{SEL}", instant=True, ref="D"),
            ],
            (0, 24, 16, 9),
            description="Settlement figures; `testbed usage --csv` exports the same from the ledger.",
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {
                            "Value #A": "GPU-hours",
                            "Value #B": "CPU-hours",
                            "Value #C": "Grant GPU-hours",
                            "Value #D": "Grant used",
                        },
                    },
                },
            ],
        ),
        _panel(
            "timeseries",
            "Observed node utilisation",
            [
                _target("testbed_node_cpu_utilization_ratio", legend="CPU {{node}}", ref="A"),
                _target("testbed_node_memory_utilization_ratio", legend="memory {{node}}", ref="B"),
            ],
            (16, 24, 8, 9),
            unit="percentunit",
            description="Observed, not allocated: the host the control plane runs on.",
        ),
        _panel(
            "timeseries",
            "Testbed components",
            [
                _target('up{job=~".*(testbed|kuberay|dcgm|mlflow).*"}', legend="{{job}} {{instance}}", ref="A"),
                _target(
                    "max by (instance) (testbed_exporter_scrape_duration_seconds)",
                    legend="scrape s {{instance}}",
                    ref="B",
                ),
                _target(
                    "sum(increase(testbed_exporter_scrape_errors_total[1h]))", legend="scrape errors (1h)", ref="C"
                ),
            ],
            (0, 33, 24, 7),
        ),
        _panel(
            "timeseries",
            "Grant burn-down in won: remaining KRW",
            [
                _target(f"tenant:testbed_tenant_remaining_krw:max{SEL}", ref="A"),
            ],
            (0, 40, 12, 8),
            unit="currencyKRW",
            description="Grant - charged - held, from the money ledger (alerts at 50/80/100% charged and when the "
            "last 7 days' burn rate runs it out before the grant ends).",
        ),
        _panel(
            "bargauge",
            "Grant in won charged",
            [_target(f"tenant:testbed_tenant_grant_krw_used:ratio{SEL}")],
            (12, 40, 6, 8),
            unit="percentunit",
            description="Charged over granted won.",
            defaults={"min": 0, "max": 1, **grant_colours},
            options={"orientation": "horizontal"},
        ),
        _panel(
            "table",
            "Forecast exhaustion",
            [
                _target(
                    f"tenant:testbed_tenant_grant_krw_forecast_exhaustion:timestamp{SEL} * 1000", instant=True, ref="A"
                ),
                _target(
                    f"max by (region, tenant) (testbed_tenant_burn_rate_krw_per_second{SEL}) * 86400",
                    instant=True,
                    ref="B",
                ),
            ],
            (18, 40, 6, 8),
            description="When the grant in won runs out at the last 7 Asia/Seoul days' burn rate.",
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {"Value #A": "Runs out", "Value #B": "KRW per day"},
                    },
                },
            ],
        ),
    ]


def build_dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (schema 39)."""
    query_var = {
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "current": {"text": "All", "value": "$__all"},
    }
    numbered = [{**p, "id": i} for i, p in enumerate(panels(), start=1)]
    return {
        "title": "Regional AI Testbed — tenants",
        "uid": "testbed-tenants",
        "description": "Per-tenant allocated GPU/CPU use, grant burn-down and jobs (sample tenants are fictional).",
        "tags": ["testbed", "metering"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus"},
                {
                    **query_var,
                    "name": "region",
                    "label": "Region",
                    "definition": "label_values(testbed_tenant_info, region)",
                    "query": {"query": "label_values(testbed_tenant_info, region)", "refId": "region"},
                },
                {
                    **query_var,
                    "name": "tenant",
                    "label": "Tenant",
                    "definition": 'label_values(testbed_tenant_info{region=~"$region"}, tenant)',
                    "query": {
                        "query": 'label_values(testbed_tenant_info{region=~"$region"}, tenant)',
                        "refId": "tenant",
                    },
                },
            ]
        },
        "panels": numbered,
    }


def render() -> str:
    return json.dumps(build_dashboard(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    DASHBOARD_FILE.write_text(render(), encoding="utf-8")
    print(f"wrote {DASHBOARD_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
