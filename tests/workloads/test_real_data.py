"""Every training template on a real data set an installed package ships (tests/workloads/real_data.py), uploaded
the way a company would (a folder of class folders, a CSV) through a real control plane, which admits the job and
hands it the tenant's own copy; the admitted command then runs as the job would, on real Ray and MLflow.

The rule each template keeps: its neural model matches the best classical baseline (scikit-learn, same split)
within the template's ``match_margin`` (2% of the metric), or the job registers the classical model and says so.
The figures are printed (``-s``) and in ``make bench`` (tests/benchmarks/bench_real_data.py)."""

from __future__ import annotations

import pytest

from testbed.storage import DATA_SCHEME
from tests.workloads.real_data import REAL_SETS

TENANT = "changwon-precision"


@pytest.mark.integration
@pytest.mark.parametrize("template", sorted(REAL_SETS))
def test_template_on_real_data_matches_classical_or_registers_it(
    template, noop_plane, workloads, mlflow_client, tmp_path
):
    write, name, description, params = REAL_SETS[template]
    local = write(tmp_path / name)
    client = noop_plane.client(TENANT)
    if local.is_dir():
        sent = client.upload_folder(local, "real/" + name)
        assert len(sent.transferred) == sum(1 for p in local.rglob("*") if p.is_file())
    else:
        client.upload_data(local, "real/" + name)
    job = client.submit(template=template, params={**params, "data_path": f"{DATA_SCHEME}real/{name}"}, cpus=1)
    run = workloads.run_command(job.entrypoint, tenant=TENANT, job_id=f"real-{template}", timeout=1200)
    assert run.returncode == 0, run.stderr[-4000:]
    fields = run.fields()
    metric = next(k for k in fields if k.startswith("neural_val_")).removeprefix("neural_")
    neural, classical = float(fields[f"neural_{metric}"]), float(fields[f"classical_{metric}"])
    trivial, shown = float(fields[f"baseline_{metric}"]), float(fields[metric])
    higher = metric == "val_accuracy"
    print(
        f"{template} on {description}: neural {metric}={neural:.4f} classical({fields['classical_best']})={classical:.4f} "
        f"trivial={trivial:.4f} registered={fields['registered']}"
    )
    gap = (neural - classical) if higher else (classical - neural)
    if fields["registered"] == "neural":
        assert gap >= -0.02 * abs(classical), "a neural model behind by more than the margin was registered"
        assert shown == neural
    else:
        assert gap < -0.02 * abs(classical) and "classical model wins" in run.line("result:")
        assert shown == classical
    version = mlflow_client.get_model_version(f"{TENANT}.{template}", fields["version"])
    assert version.tags["testbed.flavor"] == ("torch" if fields["registered"] == "neural" else "classical")
    metrics = mlflow_client.get_run(fields["run_id"]).data.metrics
    assert metrics[f"classical_best_{metric}"] == pytest.approx(classical, abs=1e-4)
    assert {f"classical_linear_{metric}", f"classical_gradient_boosting_{metric}"} <= set(metrics)
    assert "preprocessing: train=" in run.stdout
