"""The validation gate: the first good version becomes champion, a better one takes the alias,
a worse one is refused with a non-zero exit and the champion stays."""

from __future__ import annotations

import mlflow
import pytest

from testbed import jobs
from testbed.templates import get_template
from workloads.jobenv import JobEnv
from workloads.plain import fit_plain
from workloads.train import prepare, register_model

TENANT, TEMPLATE = "tenant-b", "tabular-quality"
NAME = f"{TENANT}.{TEMPLATE}"


def register(workloads, **params: object) -> str:
    """Train in-process with the shared loop (no Ray: the gate is under test here) and register."""
    resolved = get_template(TEMPLATE).resolve(dict(params))  # type: ignore[arg-type]
    prep = prepare(TEMPLATE, resolved)
    model, _ = fit_plain(prep, threads=1)
    env = JobEnv.from_environ(workloads.env(TENANT))
    mlflow.set_tracking_uri(workloads.mlflow_url)
    mlflow.set_experiment(f"{TENANT}/{TEMPLATE}")
    with mlflow.start_run(tags=env.tags("train")):
        mlflow.log_params({"template": TEMPLATE, **resolved})
        return register_model(prep, env, model, NAME)


@pytest.mark.integration
def test_gate_promotes_better_and_refuses_worse(workloads, mlflow_client):
    weak = register(workloads, epochs=3, width=8)
    first = workloads.run("validate", tenant=TENANT, model=TEMPLATE)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.line("PASS").startswith(f"PASS {NAME} v{weak}") and "no champion yet" in first.stdout
    assert mlflow_client.get_model_version_by_alias(NAME, "champion").version == weak

    strong = register(workloads, epochs=8)
    better = workloads.run("validate", tenant=TENANT, model=NAME, version=strong, margin=0.05)
    assert better.returncode == 0, better.stdout + better.stderr[-3000:]
    assert f"champion -> v{strong}" in better.line("PASS")
    assert mlflow_client.get_model_version_by_alias(NAME, "champion").version == strong

    worse = register(workloads, epochs=2, width=8, seed=3)
    refused = workloads.run("validate", tenant=TENANT, model=TEMPLATE, margin=0.05)
    assert refused.returncode == 1
    assert refused.line("FAIL").startswith(f"FAIL {NAME} v{worse}") and f"champion stays v{strong}" in refused.stdout
    assert mlflow_client.get_model_version_by_alias(NAME, "champion").version == strong

    runs = mlflow_client.search_runs(
        [mlflow_client.get_experiment_by_name(f"{TENANT}/validate").experiment_id],
        filter_string=f"tags.`{jobs.TAG_KIND}` = 'validation'",
    )
    assert len(runs) == 3 and {r.data.tags[jobs.TAG_TENANT] for r in runs} == {TENANT}
    assert mlflow_client.get_model_version(NAME, worse).tags["validation.verdict"] == "fail"


@pytest.mark.integration
def test_gate_refuses_another_tenants_model(workloads):
    job = workloads.run("validate", tenant="tenant-a", model=NAME)
    assert job.returncode == 2
    assert (
        job.stderr.strip()
        == f"error: model {NAME!r} does not belong to tenant 'tenant-a' (names are '<tenant>.<template>')"
    )
