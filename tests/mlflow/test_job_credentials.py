"""Jobs as the control plane will start them: a separate process whose only MLflow identity is
its tenant's job env. A's real smoke workload logs its first run into a new ``<tenant>/<name>``
experiment; a job holding B's credentials reaches nothing of A's, even naming A's workspace; no
password lands in MLflow params/tags, in job output or in the server log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from mlflow import MlflowClient

from tests.mlflow.tenants import identity

REPO = Path(__file__).resolve().parents[2]

_ATTACK = textwrap.dedent("""
    import json, os, sys, tempfile
    import mlflow
    from mlflow import MlflowClient
    a = json.loads(sys.argv[1])
    client = MlflowClient()
    attempts = {
        "get_experiment": lambda: client.get_experiment(a["experiment_id"]).name,
        "get_run": lambda: client.get_run(a["run_id"]).data.params,
        "search_runs": lambda: [r.info.run_id for r in client.search_runs([a["experiment_id"]])],
        "metric_history": lambda: [m.value for m in client.get_metric_history(a["run_id"], "loss")],
        "download_artifact": lambda: open(client.download_artifacts(a["run_id"], "notes/marker.txt",
                                                                    tempfile.mkdtemp())).read(),
        "champion": lambda: client.get_model_version_by_alias(a["model_name"], "champion").version,
        "move_champion": lambda: client.set_registered_model_alias(a["model_name"], "champion", 1),
        "log_into_a_run": lambda: client.log_metric(a["run_id"], "loss", 42.0),
        "delete_model": lambda: client.delete_registered_model(a["model_name"]),
        "search_models": lambda: [m.name for m in client.search_registered_models() if m.name == a["model_name"]],
    }
    results = {}
    for name, attempt in attempts.items():
        try:
            value = attempt()
            results[name] = "EMPTY" if value in ([], None) else f"GOT {value!r}"
        except Exception as exc:
            results[name] = "REFUSED " + type(exc).__name__
    # The experiment named like A's: created in B's own workspace (another experiment), refused in A's.
    try:
        experiment = mlflow.set_experiment(a["experiment_name"])
        results["set_experiment"] = "OTHER" if experiment.experiment_id != a["experiment_id"] else "GOT A's"
    except Exception as exc:
        results["set_experiment"] = "REFUSED " + type(exc).__name__
    print(json.dumps(results))
""")


def _job_env(url: str, creds, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TESTBED_"))}
    return {**base, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": url, **creds.job_env(), **extra}


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_tenant_job_first_run_in_a_new_experiment(secured):
    name = f"{secured.a.username}/smoke-{uuid.uuid4().hex[:6]}"
    env = _job_env(
        secured.url,
        secured.a,
        MLFLOW_EXPERIMENT_NAME=name,
        TESTBED_TENANT=secured.a.username,
        TESTBED_JOB_ID="job-1",
        TESTBED_REGION="gyeongnam",
    )
    done = _run([sys.executable, "-m", "workloads.smoke", "--template", "smoke"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.split("run_id=")[1].split()[0]
    with identity(secured.a):
        run = MlflowClient(secured.url).get_run(run_id)
        experiment = MlflowClient(secured.url).get_experiment(run.info.experiment_id)
    assert experiment.name == name and run.data.tags["testbed.tenant"] == secured.a.username
    assert run.data.metrics["train_loss"] > 0
    secrets_ = (secured.a.password, secured.b.password, secured.operator.password, secured.server.admin_password)
    logged = json.dumps([run.data.params, run.data.tags, experiment.tags])
    assert not [s for s in secrets_ if s in logged or s in done.stdout or s in done.stderr]


def test_other_tenants_job_reaches_nothing(secured):
    a = secured.a_data
    target = json.dumps(
        {
            "experiment_id": a.experiment_id,
            "run_id": a.run_id,
            "model_name": a.model_name,
            "experiment_name": a.experiment_name,
        }
    )
    before = secured.a_snapshot()
    for workspace in (secured.b.workspace, a.tenant):  # a job may point its own client at A's workspace
        done = _run(
            [sys.executable, "-c", _ATTACK, target], _job_env(secured.url, secured.b, MLFLOW_WORKSPACE=workspace)
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads(done.stdout.strip().splitlines()[-1])
        assert results.pop("set_experiment") == (
            "OTHER" if workspace == secured.b.workspace else "REFUSED MlflowException"
        )
        assert all(v.startswith("REFUSED") or v == "EMPTY" for v in results.values()), (workspace, results)
        assert a.secret not in done.stdout + done.stderr
    assert secured.a_snapshot() == before


def test_no_password_in_the_server_log(secured):
    log = secured.server.log_text()
    assert "/api/2.0/mlflow/users/create" in log  # the access log is there: provisioning went through it
    for secret in (secured.a.password, secured.b.password, secured.operator.password, secured.server.admin_password):
        assert secret not in log
