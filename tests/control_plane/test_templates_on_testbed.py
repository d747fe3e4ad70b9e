"""Every training template runs as a tenant's job on the local testbed and lands in MLflow with
its tags, per-epoch metrics and a tenant-scoped registered model."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from testbed.templates import list_templates

# tenant -> (template, small params): four tenants of gyeongnam, side by side on 2 CPUs
RUNS = {
    "changwon-precision": ("predictive-maintenance", {"epochs": 2}),
    "sacheon-aero-parts": ("defect-inspection", {"epochs": 2, "samples": 400}),
    "jinju-defense-optics": ("power-forecast", {"epochs": 2}),
    "gimhae-robotics": ("tabular-quality", {"epochs": 2, "samples": 800}),
}


def test_every_training_template_covered():
    assert {t.name for t in list_templates() if t.kind == "train"} == {template for template, _ in RUNS.values()}


def test_each_template_runs_as_a_tenant_job_tracked_in_mlflow(local_testbed):
    submitted = {
        tenant: local_testbed.client(tenant).submit(template=template, params=params, cpus=1)
        for tenant, (template, params) in RUNS.items()
    }
    for tenant, job in submitted.items():
        client = local_testbed.client(tenant)
        done = client.wait(job.id, timeout=600)
        assert done.status == "SUCCEEDED", client.logs(job.id).logs[-3000:]
        template = RUNS[tenant][0]
        with client.mlflow_credentials().active():  # each tenant reads its own workspace with its own login
            mlflow = MlflowClient(local_testbed.mlflow_url)
            experiment = mlflow.get_experiment_by_name(f"{tenant}/{template}")
            runs = mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`testbed.job_id` = '{job.id}'")
            assert len(runs) == 1
            run = runs[0]
            assert run.data.tags["testbed.tenant"] == tenant
            assert run.data.tags["testbed.region"] == "gyeongnam"
            assert run.data.tags["testbed.kind"] == "train"
            metric = next(name for name in run.data.metrics if name.startswith("val_"))
            assert len(mlflow.get_metric_history(run.info.run_id, metric)) == 2  # one point per epoch
            versions = mlflow.search_model_versions(f"name='{tenant}.{template}'")
            assert run.info.run_id in {v.run_id for v in versions}
