"""Hyperparameter search inside a job's budget: ``--param trials=N`` (N > 1).

Ray Tune runs N trials of the one-worker training loop (``workloads/direct.py``: the same checkpoints, retries
and per-epoch metrics as a single run), at most one trial per job CPU at once, each trial one CPU and one torch
thread. The candidates are sampled here, seeded by ``seed``, around the values given: trial 0 is exactly the
job's own configuration (so the search never does worse on validation than a single run), the others draw
``lr`` log-uniformly within 10x of it and ``width`` / ``batch_size`` from half, same and double. Each trial is a
nested MLflow run under the job's run (tags: trial id and index, its params, its best validation metric); the
best trial's model is registered from the job's run exactly as a single run registers its model (with the
classical-baseline comparison), its version tagged with the trial it came from.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from testbed.templates import get_template

if TYPE_CHECKING:
    from workloads.jobenv import JobEnv
    from workloads.train import Prepared

SEARCHED = ("lr", "width", "batch_size")
LR_SPREAD = 10.0  # lr is drawn log-uniformly in [lr / LR_SPREAD, lr * LR_SPREAD] (within the param's bounds)
SIZE_FACTORS = (0.5, 1.0, 2.0)  # width and batch_size: half, same or double (within the param's bounds)
TRIAL_METRIC = "trial_best_val"
PARENT_RUN_TAG = "mlflow.parentRunId"
TRIAL_ID_TAG, TRIAL_INDEX_TAG, TRIAL_METRIC_TAG = "testbed.trial_id", "testbed.trial_index", "testbed.trial_val_metric"


class SearchPlan(BaseModel):
    """What a search runs: the candidate params per trial and how many trials run at once."""

    trials: int = Field(ge=1)
    concurrent: int = Field(ge=1, description="trials at once: at most one per job CPU")
    cpus_per_trial: float = 1.0
    candidates: list[dict[str, float | int]]


def concurrent_trials(trials: int, cpus: float) -> int:
    """Trials at once inside a job of ``cpus`` CPUs, each trial one CPU: min(trials, floor(cpus)), at least 1."""
    return max(1, min(int(trials), math.floor(cpus)))


def _bounds(template: str, name: str) -> tuple[float, float]:
    param = next(p for p in get_template(template).params if p.name == name)
    return (
        param.minimum if param.minimum is not None else -math.inf,
        param.maximum if param.maximum is not None else math.inf,
    )


def candidates(template: str, params: dict[str, Any], trials: int, seed: int) -> list[dict[str, float | int]]:
    """``trials`` candidate settings of SEARCHED; the first is ``params``' own, the rest seeded draws around it."""
    rng = random.Random(seed)
    base = {name: params[name] for name in SEARCHED}
    chosen: list[dict[str, float | int]] = [dict(base)]
    lr_low, lr_high = _bounds(template, "lr")
    lr = float(base["lr"]) or 1e-3
    low, high = max(lr / LR_SPREAD, lr_low, 1e-7), min(lr * LR_SPREAD, lr_high)
    for _ in range(trials - 1):
        candidate: dict[str, float | int] = {"lr": float(f"{math.exp(rng.uniform(math.log(low), math.log(high))):.3g}")}
        for name in ("width", "batch_size"):
            lowest, highest = _bounds(template, name)
            value = round(int(base[name]) * rng.choice(SIZE_FACTORS))
            candidate[name] = int(min(max(value, lowest, 1), highest))
        chosen.append(candidate)
    return chosen


def plan(template: str, params: dict[str, Any], cpus: float) -> SearchPlan:
    """The search for a job's params (``trials``, ``seed`` and the SEARCHED values) inside ``cpus``."""
    trials = int(params.get("trials", 1))
    return SearchPlan(
        trials=trials,
        concurrent=concurrent_trials(trials, cpus),
        candidates=candidates(template, params, trials, int(params["seed"])),
    )


def run_trial(
    config: dict[str, Any],
    *,
    template: str,
    params: dict[str, Any],
    candidates: list[dict[str, Any]],
    train: Any,
    val: Any,
    baseline: float | None,
    class_weights: list[float] | None,
    tracking_uri: str,
    experiment_id: str,
    parent_run_id: str,
    run_dir: str,
    tags: dict[str, str],
) -> None:
    """One Tune trial: the one-worker loop in this trial's process, logged as a nested run of the job's run."""
    import mlflow
    from ray import tune

    from workloads.checkpoints import WorkerConfig
    from workloads.direct import fit_direct
    from workloads.tasks import get_task

    index = int(config["index"])
    candidate = dict(candidates[index])
    trial_id = tune.get_context().get_trial_id()
    trial_params = {**params, **candidate, "trials": 1}
    client = mlflow.MlflowClient(tracking_uri)
    run = client.create_run(
        experiment_id,
        run_name=f"trial-{index}",
        tags={
            **tags,
            PARENT_RUN_TAG: parent_run_id,
            TRIAL_ID_TAG: trial_id,
            TRIAL_INDEX_TAG: str(index),
            **{f"testbed.trial.{name}": str(value) for name, value in candidate.items()},
        },
    )
    worker = WorkerConfig(
        template=template,
        params=trial_params,
        threads=1,
        run_dir=f"{run_dir}/trial-{index}",
        tracking_uri=tracking_uri,
        run_id=run.info.run_id,
        baseline=baseline,
        class_weights=class_weights,
    )
    try:
        result = fit_direct(template, trial_params, train, val, worker)
    except Exception:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    metric = float(result.metrics[f"best_val_{get_task(template).metric}"])
    client.set_tag(run.info.run_id, TRIAL_METRIC_TAG, repr(metric))
    tune.report(
        {
            TRIAL_METRIC: metric,
            "index": index,
            "run_id": run.info.run_id,
            "trial_id": trial_id,
            "best_epoch": float(result.metrics.get("best_epoch", -1)),
            "checkpoint_url": result.checkpoint.url if result.checkpoint else "",
        }
    )


def search(prep: Prepared, env: JobEnv, experiment_id: str, parent_run_id: str, run_name: str, storage: str) -> str:
    """Run the search and register the best trial from the job's run; the ``result:`` line.
    Raises TrainingFailed when no trial finished."""
    import mlflow
    from ray import tune

    from workloads.checkpoints import load_state
    from workloads.direct import LocalCheckpoint, TrainingFailed
    from workloads.train import finish

    task = prep.task
    search_plan = plan(prep.template, prep.params, env.cpus)
    if env.gpus:
        print(f"[testbed] search: {env.gpus} GPU(s) in the budget; trials train on one CPU each", flush=True)
    print(
        f"search: trials={search_plan.trials} concurrent={search_plan.concurrent} cpus_per_trial=1 "
        f"searched={','.join(SEARCHED)}",
        flush=True,
    )
    trainable = tune.with_parameters(
        run_trial,
        template=prep.template,
        params=prep.params,
        candidates=search_plan.candidates,
        train=prep.train,
        val=prep.val,
        baseline=prep.baseline,
        class_weights=prep.class_weights,
        tracking_uri=env.tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        run_dir=f"{storage.rstrip('/')}/{run_name}",
        tags=env.tags("train-trial"),
    )
    mode = "max" if task.higher_is_better else "min"
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": search_plan.cpus_per_trial}),
        param_space={"index": tune.grid_search(list(range(search_plan.trials)))},
        tune_config=tune.TuneConfig(metric=TRIAL_METRIC, mode=mode, max_concurrent_trials=search_plan.concurrent),
        run_config=tune.RunConfig(name=f"{run_name}-search", storage_path=storage, verbose=0),
    )
    grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    finished = [r for r in results if r.error is None and r.metrics and TRIAL_METRIC in r.metrics]
    if not finished:
        first = next((r.error for r in results if r.error is not None), None)
        raise TrainingFailed(
            f"all {search_plan.trials} trials failed: {str(first).strip().splitlines()[-1] if first else 'no result'}"
        )
    best = grid.get_best_result(metric=TRIAL_METRIC, mode=mode, filter_nan_and_inf=True)
    metrics: dict[str, Any] = best.metrics or {}
    best_params = {**prep.params, **search_plan.candidates[int(metrics["index"])]}
    with LocalCheckpoint(str(metrics["checkpoint_url"])).as_directory() as folder:
        model = load_state(folder, task.build_model(best_params, prep.train))
    neural = float(metrics[TRIAL_METRIC])
    trial_tags = {
        TRIAL_ID_TAG: str(metrics["trial_id"]),
        TRIAL_INDEX_TAG: str(int(metrics["index"])),
        "testbed.trial_run_id": str(metrics["run_id"]),
    }
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_params({"template": prep.template, **best_params})
        mlflow.log_metrics(
            {
                f"best_val_{task.metric}": neural,
                "trials_finished": float(len(finished)),
                "trials_failed": float(search_plan.trials - len(finished)),
            }
        )
        mlflow.set_tags({f"testbed.best_{key}": value for key, value in trial_tags.items()})
        line = finish(
            replace(prep, params=best_params),
            env,
            model,
            neural,
            {**metrics, "start_epoch": 0},
            threads=max(1, math.floor(env.cpus)),
            version_tags=trial_tags,
        )
    best_values = " ".join(f"{name}={best_params[name]}" for name in SEARCHED)
    return f"{line} trials={search_plan.trials} best_trial={int(metrics['index'])} {best_values}"
