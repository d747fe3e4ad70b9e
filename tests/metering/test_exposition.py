"""The /metrics exposition: names, labels, values against the ledger, lint, errors."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from operators.control_plane.db.store import Store
from prometheus_client import generate_latest

from operators.metering.exporter import make_registry
from operators.control_plane.db.ledger import Ledger
from testbed.config import StackConfig

from .helpers import add_job

T0 = 1_780_000_000.0
COUNTER_LABELS = {"tenant", "gpu_model"}


def scrape(registry) -> dict[str, dict[tuple, float]]:
    """metric sample name -> {sorted label items: value}"""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture()
def filled(store: Store, ledger: Ledger, stack: StackConfig) -> Ledger:
    tenants = [t.id for t in stack.tenants]
    add_job(store, tenants[0], "SUCCEEDED", started=T0, ended=T0 + 3600, cpus=2, gpus=1, gpu_model="l4", memory=2**30)
    add_job(store, tenants[0], "FAILED", started=T0, ended=T0 + 60, cpus=1)
    add_job(store, tenants[1], "STOPPED", started=T0, ended=T0 + 1800, cpus=4, gpus=2, gpu_model="a100")
    add_job(store, tenants[1], "PENDING", started=None)
    add_job(store, "removed-tenant", "SUCCEEDED", started=T0, ended=T0 + 10, cpus=1)
    return ledger


def test_exposition_names_labels_and_values(filled: Ledger, stack: StackConfig) -> None:
    registry = make_registry(filled, stack)
    metrics = scrape(registry)
    first, second = stack.tenants[0], stack.tenants[1]
    assert metrics["testbed_tenant_cpu_requested_seconds_total"][(("tenant", first.id),)] == pytest.approx(
        2 * 3600 + 60
    )
    assert metrics["testbed_tenant_gpu_allocated_seconds_total"][
        (("gpu_model", "l4"), ("tenant", first.id))
    ] == pytest.approx(3600)
    assert metrics["testbed_tenant_gpu_allocated_seconds_total"][
        (("gpu_model", "a100"), ("tenant", second.id))
    ] == pytest.approx(3600)
    assert metrics["testbed_tenant_memory_requested_byte_seconds_total"][(("tenant", first.id),)] == pytest.approx(
        2**30 * 3660
    )
    assert metrics["testbed_tenant_jobs"][(("status", "FAILED"), ("tenant", first.id))] == 1
    assert metrics["testbed_tenant_jobs"][(("status", "PENDING"), ("tenant", second.id))] == 1
    assert metrics["testbed_tenant_grant_gpu_seconds"][(("tenant", first.id),)] == first.grant.gpu_seconds
    assert metrics["testbed_tenant_grant_used_ratio"][(("tenant", first.id),)] == pytest.approx(
        3600 / first.grant.gpu_seconds
    )
    assert (
        metrics["testbed_tenant_grant_start_timestamp_seconds"][(("tenant", first.id),)] == first.grant.start_timestamp
    )
    assert metrics["testbed_tenant_grant_end_timestamp_seconds"][(("tenant", first.id),)] == first.grant.end_timestamp
    info = {dict(k)["tenant"]: dict(k) for k in metrics["testbed_tenant_info"]}
    assert info[first.id] == {"tenant": first.id, "name": first.name, "region": "gyeongnam", "industry": first.industry}
    # every configured tenant has series (zeros included), so rules and dashboards see all of them
    for tenant in stack.tenants:
        assert (("tenant", tenant.id),) in metrics["testbed_tenant_cpu_requested_seconds_total"]
        assert any(dict(k)["tenant"] == tenant.id for k in metrics["testbed_tenant_gpu_allocated_seconds_total"])
    # a tenant no longer in the stack file keeps its usage, but has no grant or info
    assert (("tenant", "removed-tenant"),) in metrics["testbed_tenant_cpu_requested_seconds_total"]
    assert "removed-tenant" not in info
    assert metrics["testbed_exporter_scrape_errors_total"][()] == 0
    assert metrics["testbed_exporter_scrape_duration_seconds"][()] > 0


def test_counters_carry_no_job_pod_or_region_label(filled: Ledger, stack: StackConfig) -> None:
    for family in text_string_to_metric_families(generate_latest(make_registry(filled, stack)).decode()):
        assert family.name.startswith("testbed_")
        for sample in family.samples:
            assert not {"job", "pod", "job_id", "instance"} & sample.labels.keys(), sample
            if family.type == "counter":
                assert set(sample.labels) <= COUNTER_LABELS, sample
            if family.name != "testbed_tenant_info":
                assert "region" not in sample.labels  # region is a target label


def test_observed_use_is_a_separate_metric(filled: Ledger, stack: StackConfig) -> None:
    metrics = scrape(make_registry(filled, stack))
    (cpu,) = metrics["testbed_node_cpu_utilization_ratio"].values()
    (memory,) = metrics["testbed_node_memory_utilization_ratio"].values()
    assert 0.0 <= cpu <= 1.0 and 0.0 < memory <= 1.0
    assert not any(name.startswith("testbed_tenant_") and "utilization" in name for name in metrics)


def test_label_values_are_escaped_and_read_back(filled: Ledger, stack: StackConfig) -> None:
    """Quotes, backslashes and newlines in a tenant's name survive the exposition /metrics writes."""
    tricky_name = 'Quote " Backslash \\ Newline \n Co (sample)'
    tricky = stack.tenants[0].model_copy(update={"name": tricky_name})
    odd_stack = stack.model_copy(update={"tenants": [tricky, *stack.tenants[1:]]})
    registry = make_registry(filled, odd_stack, observe_node=False)
    assert 'name="Quote \\" Backslash \\\\ Newline \\n Co (sample)"' in generate_latest(registry).decode()
    info = {dict(k)["tenant"]: dict(k)["name"] for k in scrape(registry)["testbed_tenant_info"]}
    assert info[tricky.id] == tricky_name


def test_a_broken_database_counts_a_scrape_error_and_still_answers(
    filled: Ledger, stack: StackConfig, store: Store
) -> None:
    registry = make_registry(filled, stack, observe_node=False)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE usage_totals")
    for expected in (1, 2):
        metrics = scrape(registry)
        assert metrics["testbed_exporter_scrape_errors_total"][()] == expected
        assert "testbed_tenant_cpu_requested_seconds_total" not in metrics


def test_promtool_finds_nothing_to_lint_on_a_real_scrape(noop_plane, promtool: str, stack: StackConfig) -> None:
    store = noop_plane.plane.store
    add_job(store, stack.tenants[0].id, "SUCCEEDED", started=T0, ended=T0 + 100, cpus=2, gpus=1, gpu_model="l4")
    add_job(store, stack.tenants[1].id, "RUNNING", started=T0, last_seen=T0 + 5, cpus=1)
    operator = {"Authorization": f"Bearer {noop_plane.token('operator')}"}
    response = httpx.get(
        f"{noop_plane.url}/metrics", headers=operator, timeout=10
    )  # the scraper holds the operator token
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "testbed_tenant_cpu_requested_seconds_total" in response.text
    lint = subprocess.run([promtool, "check", "metrics"], input=response.content, capture_output=True, timeout=60)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), (lint.stdout, lint.stderr)
