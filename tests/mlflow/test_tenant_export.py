"""testbed tenants export, MLflow part: a company's experiments, runs, artifacts and registered models come out of
MLflow's REST API with the operator's read-only login, in the company's workspace only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.tenant_exit import export_mlflow

from .conftest import TENANT_A

pytestmark = pytest.mark.integration


def test_export_holds_the_tenants_mlflow_data_and_no_one_elses(secured, tmp_path: Path) -> None:
    dest = tmp_path / "mlflow"
    exported = export_mlflow(secured.url, secured.operator.username, secured.operator.password, TENANT_A, dest)
    a, b = secured.a_data, secured.b_data
    assert exported.experiments >= 1 and exported.runs >= 1 and exported.models >= 1 and exported.artifacts >= 1
    experiments = json.loads((dest / "experiments.json").read_text())
    assert a.experiment_name in {e["name"] for e in experiments}
    run = json.loads((dest / "runs" / a.run_id / "run.json").read_text())
    assert {p["key"]: p["value"] for p in run["data"]["params"]}["marker_param"] == a.secret
    assert (dest / "runs" / a.run_id / "artifacts" / "notes" / "marker.txt").read_text() == a.secret
    models = {m["name"]: m for m in json.loads((dest / "registered_models.json").read_text())}
    assert a.model_name in models
    assert [v["version"] for v in models[a.model_name]["versions"]] == [a.model_version]
    everything = "".join(p.read_text(errors="replace") for p in dest.rglob("*") if p.is_file())
    for marker in b.leaked_markers():
        assert marker not in everything  # nothing of tenant B
