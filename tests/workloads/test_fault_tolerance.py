"""A worker that dies mid-training is restarted and resumes from its last checkpoint, not epoch 0."""

from __future__ import annotations

import pytest


@pytest.mark.integration
def test_worker_failure_resumes_from_checkpoint(workloads, mlflow_client):
    job = workloads.run("tabular-quality", tenant="tenant-a", job_id="drill", epochs=5, fail_at_epoch=3, max_failures=1)
    assert job.returncode == 0, job.stderr[-4000:]
    assert "injected failure at epoch 3" in job.stderr
    fields = job.fields()
    # epoch 3 failed before its checkpoint; the second attempt starts after epoch 2's checkpoint
    assert fields["start_epoch"] == "3"
    starts = [m.value for m in mlflow_client.get_metric_history(fields["run_id"], "attempt_start_epoch")]
    assert sorted(starts) == [0, 3]
    assert len(mlflow_client.get_metric_history(fields["run_id"], "val_rmse")) == 5
    assert (workloads.storage / "tenant-a" / "drill" / "tabular-quality-drill" / "injected-failure-epoch-3").exists()


@pytest.mark.integration
def test_failure_without_retries_fails_the_job(workloads):
    job = workloads.run("tabular-quality", tenant="tenant-a", job_id="drill-no-retry", epochs=3, fail_at_epoch=1, max_failures=0)
    assert job.returncode == 1
    errors = [line for line in job.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: training failed") and "injected failure at epoch 1" in errors[0], errors
