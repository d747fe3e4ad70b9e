"""Each training template (tabular-quality: see test_fault_tolerance.py) trains a few epochs on synthetic data through Ray Train and beats its
trivial baseline by a stated margin; the run carries the testbed tags, params, per-epoch and
system metrics, and the model is registered under the tenant."""

from __future__ import annotations

import pytest

from testbed import jobs
from testbed.templates import get_template

# template -> (params, metric, check(model, baseline) with the margin it states)
CASES = {
    "defect-inspection": ({}, "accuracy", lambda m, b: m >= b + 0.15),  # +15 points over majority class
    "predictive-maintenance": ({}, "accuracy", lambda m, b: m >= b + 0.08),  # +8 points over majority class
    "power-forecast": ({}, "mae", lambda m, b: m <= 0.5 * b),  # at most half the persistence error
}
# tabular-quality (DDP on 2 workers, through a worker failure) is in test_fault_tolerance.py


@pytest.mark.integration
@pytest.mark.parametrize("template", sorted(CASES))
def test_template_beats_baseline_and_is_tracked(workloads, mlflow_client, template):
    params, metric, check = CASES[template]
    job = workloads.run(template, tenant="tenant-a", job_id=f"tpl-{template}", **params)
    assert job.returncode == 0, job.stderr[-4000:]
    fields = job.fields()
    value, baseline = float(fields[f"val_{metric}"]), float(fields[f"baseline_val_{metric}"])
    print(f"{template}: val_{metric}={value:.4f} baseline={baseline:.4f}")
    assert check(value, baseline), (
        f"{template}: val_{metric}={value:.4f} does not beat baseline {baseline:.4f} by the margin"
    )

    run = mlflow_client.get_run(fields["run_id"])
    tags = run.data.tags
    assert tags[jobs.TAG_TENANT] == "tenant-a" and tags[jobs.TAG_JOB_ID] == f"tpl-{template}"
    assert tags[jobs.TAG_REGION] == "gyeongnam" and tags[jobs.TAG_KIND] == "train"
    assert tags["testbed.suite"] == "workloads"  # from TESTBED_RUN_TAGS
    experiment = mlflow_client.get_experiment(run.info.experiment_id)
    assert experiment.name == f"tenant-a/{template}"
    assert run.data.params["template"] == template and run.data.params["epochs"] == str(
        get_template(template).resolve(params)["epochs"]
    )
    epochs = int(run.data.params["epochs"])
    assert len(mlflow_client.get_metric_history(run.info.run_id, f"val_{metric}")) == epochs
    assert any(key.startswith("system/") for key in run.data.metrics), sorted(run.data.metrics)

    name = f"tenant-a.{template}"
    version = mlflow_client.get_model_version(name, fields["version"])
    assert version.run_id == run.info.run_id and version.tags["testbed.tenant"] == "tenant-a"
    logged = mlflow_client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id='{run.info.run_id}'"
    )
    assert logged and logged[0].model_id
