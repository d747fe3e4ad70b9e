"""The idle-GPU rules and the fake DCGM exporter name what NVIDIA's dcgm-exporter exports: checked against its files
(tests/upstream/dcgm-exporter-4.5.3-4.8.2, provenance in tests/upstream/SOURCES.md), not against memory."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import yaml

from tests.metering.fake_dcgm import FakeDcgmExporter

UPSTREAM = Path(__file__).resolve().parents[1] / "upstream" / "dcgm-exporter-4.5.3-4.8.2"
RULES = Path(__file__).resolve().parents[2] / "operators" / "metering" / "rules.yaml"
METRIC = "DCGM_FI_DEV_GPU_UTIL"


def _default_counters() -> dict[str, str]:
    """metric name -> Prometheus type, as the exporter's default counters file declares them."""
    rows = csv.reader(
        line
        for line in UPSTREAM.joinpath("default-counters.csv").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {row[0].strip(): row[1].strip() for row in rows if len(row) >= 2}


def _kubernetes_attributes() -> dict[str, str]:
    """The exporter's names for the pod it maps a GPU to (``podAttribute = "pod"`` ...)."""
    text = UPSTREAM.joinpath("const.go").read_text()
    return dict(re.findall(r'^\s*(\w+Attribute)\s*=\s*"([^"]+)"', text, flags=re.M))


def _idle_rule() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    [group] = [g for g in groups if g["name"] == "testbed.gpu.idle"]
    [rule] = [r for r in group["rules"] if r.get("record") == "gpu:testbed_job_gpu_utilization:ratio"]
    return rule["expr"]


def test_the_utilisation_metric_is_a_default_gauge_of_the_exporter():
    assert _default_counters()[METRIC] == "gauge"
    assert METRIC in _idle_rule()


def test_the_rules_join_on_the_labels_the_exporter_writes():
    attributes = _kubernetes_attributes()
    pod, namespace = attributes["podAttribute"], attributes["namespaceAttribute"]
    expr = " ".join(_idle_rule().split())
    assert f"on ({namespace}, {pod})" in expr and f'{pod}!=""' in expr
    uuid = re.search(r'uuid := "([^"]+)"', UPSTREAM.joinpath("gpu_collector.go").read_text()).group(1)
    assert f"max by ({namespace}, {pod}, {uuid})" in expr  # one series per GPU, as the exporter labels them


def test_the_fake_exporter_labels_gpus_as_the_exporter_does():
    attributes = _kubernetes_attributes()
    fake = FakeDcgmExporter()
    try:
        fake.jobs["job-1"] = ("alice", 3.0)
        [line] = [line for line in fake.render().splitlines() if line.startswith(METRIC) and "job-1" in line]
    finally:
        fake.server.server_close()
    labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
    assert labels[attributes["podAttribute"]] == "job-1-head"
    assert labels[attributes["namespaceAttribute"]] == "tenant-alice"
    assert attributes["containerAttribute"] in labels and "UUID" in labels
