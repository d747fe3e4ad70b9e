"""``--param trials=N``: the search space and concurrency sizing (fast), and a real Ray Tune search whose trials
are nested MLflow runs and whose best trial is the registered model (integration)."""

from __future__ import annotations

import math

import pytest

from testbed.templates import TemplateError, get_template
from workloads.search import (
    PARENT_RUN_TAG,
    SEARCHED,
    TRIAL_ID_TAG,
    TRIAL_METRIC_TAG,
    candidates,
    concurrent_trials,
    plan,
)


@pytest.mark.parametrize(
    ("trials", "cpus", "expected"), [(1, 2, 1), (3, 2, 2), (3, 8, 3), (5, 1, 1), (4, 2.5, 2), (2, 0.5, 1)]
)
def test_concurrent_trials_fit_the_job_cpus(trials, cpus, expected):
    assert concurrent_trials(trials, cpus) == expected


@pytest.mark.parametrize(
    "template", ["tabular-quality", "predictive-maintenance", "defect-inspection", "power-forecast"]
)
def test_candidates_start_with_the_given_values_and_stay_in_bounds(template):
    spec = get_template(template)
    params = spec.resolve({"lr": "0.5", "width": "4096", "batch_size": "1"})
    drawn = candidates(template, params, trials=12, seed=3)
    assert len(drawn) == 12 and all(set(c) == set(SEARCHED) for c in drawn)
    assert drawn[0] == {"lr": 0.5, "width": 4096, "batch_size": 1}  # trial 0: the job's own configuration
    bounds = {p.name: (p.minimum, p.maximum) for p in spec.params}
    for c in drawn[1:]:
        assert 0.05 <= c["lr"] <= 5.0 + 1e-9 and bounds["lr"][0] <= c["lr"] <= bounds["lr"][1]
        assert c["width"] in (2048, 4096)  # doubling is capped at the param's maximum
        assert c["batch_size"] in (1, 2)  # halving 1 stays 1
        assert isinstance(c["width"], int) and isinstance(c["batch_size"], int)
    assert len({c["lr"] for c in drawn}) > 6  # drawn, not repeated
    assert candidates(template, params, trials=12, seed=3) == drawn  # seeded
    assert candidates(template, params, trials=12, seed=4) != drawn


def test_plan_defaults_to_no_search_and_rejects_bad_trials():
    spec = get_template("tabular-quality")
    single = plan(spec.name, spec.resolve({}), cpus=2)
    assert single.trials == 1 and single.concurrent == 1 and len(single.candidates) == 1
    searched = plan(spec.name, spec.resolve({"trials": "5"}), cpus=2)
    assert searched.trials == 5 and searched.concurrent == 2 and searched.cpus_per_trial == 1
    assert "--trials=1" in spec.command(spec.resolve({}))
    with pytest.raises(TemplateError, match="trials"):
        spec.resolve({"trials": "0"})


@pytest.mark.integration
def test_search_logs_nested_trials_and_registers_the_best(workloads, mlflow_client):
    job = workloads.run(
        "tabular-quality",
        tenant="tenant-search",
        job_id="search-1",
        trials=3,
        epochs=2,
        samples=600,
        match_margin=1.0,
        timeout=240,
    )
    assert job.returncode == 0, job.stderr[-4000:]
    print(job.line("search:"), job.line("result:"), sep="\n")
    assert "search: trials=3 concurrent=2" in job.stdout
    fields = job.fields()
    parent = mlflow_client.get_run(fields["run_id"])
    children = mlflow_client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent.info.run_id}'"
    )
    assert len(children) == 3
    assert len({c.data.tags[TRIAL_ID_TAG] for c in children}) == 3
    for child in children:  # each trial: its params, its per-epoch metrics, its validation metric as a tag
        assert float(child.data.tags[TRIAL_METRIC_TAG]) == pytest.approx(child.data.metrics["best_val_rmse"])
        assert child.data.params["lr"] == child.data.tags["testbed.trial.lr"]
        assert len(mlflow_client.get_metric_history(child.info.run_id, "val_rmse")) == 2
    assert len({c.data.params["lr"] for c in children}) == 3

    best = min(children, key=lambda c: float(c.data.tags[TRIAL_METRIC_TAG]))  # rmse: lower is better
    assert float(fields["neural_val_rmse"]) == pytest.approx(float(best.data.tags[TRIAL_METRIC_TAG]), abs=1e-4)
    assert fields["registered"] == "neural" and "classical_best" in fields  # the classical comparison still runs
    version = mlflow_client.get_model_version("tenant-search.tabular-quality", fields["version"])
    assert version.run_id == parent.info.run_id
    assert version.tags["testbed.trial_run_id"] == best.info.run_id
    assert version.tags[TRIAL_ID_TAG] == best.data.tags[TRIAL_ID_TAG]
    assert (
        parent.data.params["lr"] == best.data.params["lr"] and parent.data.params["width"] == best.data.params["width"]
    )
    assert not math.isnan(parent.data.metrics["best_val_rmse"])
