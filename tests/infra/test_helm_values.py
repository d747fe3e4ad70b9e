"""Every key path the stacks set under a Helm release's ``values`` exists in that chart's values.yaml.

The values.yaml files are those of the pinned chart versions, vendored unmodified in tests/upstream/. A key
the chart does not know is silently ignored by Helm, so a typo or a key renamed upstream would deploy a
different platform than the stack describes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from testbed.versions import CHARTS

from tests.infra.crd_schema import UPSTREAM, chart_folder

# Subcharts: values under this key of the parent chart go to the subchart (Chart.yaml dependency of the parent
# at its tag, see tests/upstream/SOURCES.md); keys the parent's values.yaml does not list are looked up there.
SUBCHART_VALUES = {
    ("kube-prometheus-stack", "grafana"): UPSTREAM / "grafana-12.11.1" / "values.yaml",
    ("kube-prometheus-stack", "kube-state-metrics"): UPSTREAM / "kube-state-metrics-8.4.0" / "values.yaml",
}

# Free-form maps: the stacks may put their own keys below these paths, because the chart's values.yaml shows
# a map meant to be filled. Each entry says why; nothing else is exempt.
FREE_FORM = {
    (
        "kube-prometheus-stack",
        "prometheus.prometheusSpec.externalLabels",
    ): "values.yaml: `externalLabels: {}` -- labels Prometheus adds to every series and alert",
    (
        "cluster-autoscaler",
        "extraArgs",
    ): "values.yaml: `extraArgs:` a map of cluster-autoscaler command-line flags (logtostderr, v, ...), "
    "other flags listed as commented examples; each flag the stack sets must be one of those",
}


@lru_cache(maxsize=None)
def _load(path: Path) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def chart_values(key: str) -> dict:
    return _load(chart_folder(key, CHARTS[key].version) / "values.yaml")


def key_paths(chart: str, values: dict, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of every leaf the stack sets; a free-form map is one leaf."""
    for key, value in values.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value and (chart, ".".join(path)) not in FREE_FORM:
            yield from key_paths(chart, value, path)
        else:
            yield path, value


_MISSING = object()


def lookup(document: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(document, dict) or part not in document:
            return _MISSING
        document = document[part]
    return document


def upstream_default(chart: str, path: tuple[str, ...]) -> Any:
    """The chart's default at ``path`` (the parent's values.yaml, then a subchart's); _MISSING if neither has it."""
    found = lookup(chart_values(chart), path)
    subchart = SUBCHART_VALUES.get((chart, path[0]))
    if found is _MISSING and subchart is not None:
        found = lookup(_load(subchart), path[1:])
    return found


def releases(runs) -> Iterator[tuple[str, str, dict]]:
    for region, run in runs.items():
        for release in run.of_type("kubernetes:helm.sh/v3:Release"):
            yield region, release.inputs["name"], release.inputs.get("values") or {}


def test_every_release_has_its_charts_values_vendored(runs):
    charts = {chart for _, chart, _ in releases(runs)}
    assert charts == set(CHARTS)
    for chart in charts:
        assert isinstance(chart_values(chart), dict)


def test_every_helm_value_key_exists_in_the_charts_values_yaml(runs):
    checked = set()
    for region, chart, values in releases(runs):
        for path, value in key_paths(chart, values):
            default = upstream_default(chart, path)
            where = f"{region}: {chart} {CHARTS[chart].version} values.{'.'.join(path)}"
            assert default is not _MISSING, f"{where}: not in the chart's values.yaml"
            if isinstance(default, dict) and default and (chart, ".".join(path)) not in FREE_FORM:
                pytest.fail(f"{where}: the chart expects a map here, got {value!r}")
            checked.add((chart, ".".join(path)))
    # Every chart is configured somewhere; every exemption is in use.
    assert {chart for chart, _ in checked} == set(CHARTS)
    assert set(FREE_FORM) <= checked


def test_free_form_maps_are_maps_meant_to_be_filled(runs):
    for (chart, dotted), reason in FREE_FORM.items():
        default = upstream_default(chart, tuple(dotted.split(".")))
        assert isinstance(default, dict), f"{chart} {dotted}: not a map in values.yaml ({reason})"
    assert upstream_default("kube-prometheus-stack", ("prometheus", "prometheusSpec", "externalLabels")) == {}
    text = (chart_folder("cluster-autoscaler", CHARTS["cluster-autoscaler"].version) / "values.yaml").read_text()
    for region, chart, values in releases(runs):
        if chart == "cluster-autoscaler":
            for flag in values["extraArgs"]:
                assert f"# {flag}:" in text or f"  {flag}:" in text, f"{region}: unknown cluster-autoscaler flag {flag}"


def test_a_misspelt_key_is_caught():
    assert upstream_default("kuberay-operator", ("metrics", "serviceMonitor", "enabled")) is False
    assert upstream_default("kuberay-operator", ("metrics", "servicemonitor", "enabled")) is _MISSING
    assert upstream_default("kube-prometheus-stack", ("grafana", "service", "type")) == "ClusterIP"  # subchart
    assert upstream_default("kube-prometheus-stack", ("grafana", "fullnameOverride")) is _MISSING
    assert upstream_default("kueue", ("enablePrometheus",)) is False


def test_cluster_autoscaler_runs_the_release_of_the_clusters_minor(runs, stacks):
    from testbed.versions import CLUSTER_AUTOSCALER_IMAGES

    for region, chart, values in releases(runs):
        if chart == "cluster-autoscaler":
            image = CLUSTER_AUTOSCALER_IMAGES[stacks[region].cluster.kubernetes_version]
            assert values["image"] == {"repository": image.repository, "tag": image.tag}
            minor = stacks[region].cluster.kubernetes_version
            assert image.tag.startswith(f"v{minor}."), f"{region}: {image.tag} is not a {minor} release"
    assert upstream_default("cluster-autoscaler", ("image", "repository")) == image.repository


def test_unpinned_kubernetes_minor_is_refused():
    import pulumi

    from tests.infra.harness import load_stack_document, run_region

    document = load_stack_document("ulsan")
    document["config"]["testbed:cluster"]["kubernetes_version"] = "1.32"
    with pytest.raises(pulumi.RunError) as info:
        run_region("ulsan", document)
    assert "Pulumi.ulsan.yaml: config.testbed:cluster.kubernetes_version: no cluster-autoscaler release" in str(
        info.value
    )
