"""DDP on two workers survives a worker that dies mid-training: the group restarts from the last
checkpoint, not epoch 0, and the model still beats its baseline. Without retries the job fails."""

from __future__ import annotations

import pytest


@pytest.mark.integration
def test_ddp_worker_failure_resumes_from_checkpoint(workloads, mlflow_client):
    job = workloads.run(
        "tabular-quality", tenant="tenant-a", job_id="drill", workers=2, fail_at_epoch=3, max_failures=1
    )
    assert job.returncode == 0, job.stderr[-4000:]
    assert "injected failure at epoch 3" in job.stderr
    fields = job.fields()
    # epoch 3 failed before its checkpoint; the second attempt starts after epoch 2's checkpoint
    assert fields["start_epoch"] == "3"
    run_id = fields["run_id"]
    assert sorted(m.value for m in mlflow_client.get_metric_history(run_id, "attempt_start_epoch")) == [0, 3]
    assert sorted(m.step for m in mlflow_client.get_metric_history(run_id, "val_rmse")) == list(range(8))
    assert (
        workloads.storage / "tenant-a" / "jobs" / "drill" / "tabular-quality-drill" / "injected-failure-epoch-3"
    ).exists()
    rmse, baseline = float(fields["val_rmse"]), float(fields["baseline_val_rmse"])
    print(f"tabular-quality (2 workers, resumed at epoch 3): val_rmse={rmse:.4f} baseline={baseline:.4f}")
    assert rmse <= 0.6 * baseline  # at most 60% of the mean predictor's RMSE


@pytest.mark.integration
def test_failure_without_retries_fails_the_job(workloads):
    job = workloads.run(
        "tabular-quality", tenant="tenant-a", job_id="drill-no-retry", epochs=3, fail_at_epoch=1, max_failures=0
    )
    assert job.returncode == 1
    errors = [line for line in job.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: training failed: injected failure at epoch 1 (fail_at_epoch drill)"], errors
