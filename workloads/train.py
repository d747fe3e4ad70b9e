"""Training entrypoint: ``python -m workloads.train --template NAME --<param>=<value> ...``.

Runs the template's task on Ray Train (TorchTrainer, DDP) inside the job's CPU/GPU budget,
checkpoints every epoch to the job's storage path, resumes from the latest checkpoint after a
worker failure, logs to MLflow from rank 0 and registers the model as ``<tenant>.<template>``.
Runs standalone too (``ray job submit -- python -m workloads.train ...``) with local defaults.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import torch

from testbed.templates import TemplateError
from workloads.cli import parse_args
from workloads.data import DataError
from workloads.jobenv import JobEnv
from workloads.tasks import Dataset, Task, get_task, split
from workloads.tracking import registered_model_name, use_experiment

if TYPE_CHECKING:
    import ray.train
from workloads.checkpoints import WorkerConfig, load_state


@dataclass
class Prepared:
    """A template's task, resolved params and train / validation data."""

    template: str
    task: Task
    params: dict[str, Any]
    train: Dataset
    val: Dataset
    class_weights: list[float] | None = None

    @property
    def baseline(self) -> float:
        return self.task.baseline(self.train, self.val)

    def preprocessing_report(self) -> str:
        """One line: what the preprocessing (fitted on the training split) does with this data."""
        parts = [f"train={len(self.train)} val={len(self.val)} inputs={int(np.prod(self.train.x.shape[1:]))}"]
        if self.train.missing:
            parts.append(
                "imputed (training median) missing values: "
                + ", ".join(f"{column}={count}" for column, count in sorted(self.train.missing.items()))
            )
        if self.class_weights:
            parts.append(
                "class weights (imbalanced labels): "
                + ", ".join(
                    f"{name}={w:.2f}"
                    for name, w in zip(
                        self.train.classes or map(str, range(len(self.class_weights))), self.class_weights, strict=False
                    )
                )
            )
        return "preprocessing: " + "; ".join(parts)


def prepare(template: str, params: dict[str, Any]) -> Prepared:
    """Load or generate the data and split it; DataError if the data is unusable."""
    task = get_task(template)
    data = task.dataset(params, seed=int(params["seed"]))
    train, val = split(data, float(params["val_fraction"]), int(params["seed"]))
    if task.problem == "classification" and len(np.unique(train.y)) < 2:
        raise DataError(
            f"data path {params.get('data_path') or '<synthetic>'!r}: the training split holds one class only"
        )
    return Prepared(template, task, params, train, val, class_weights=task.class_weights(train))


def connect_ray(env: JobEnv) -> None:
    """Join the job's cluster (RAY_ADDRESS, as under ``ray job submit``) or start a local one on 127.0.0.1."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(num_cpus=max(1, math.ceil(env.cpus)), include_dashboard=False, _node_ip_address="127.0.0.1")


def scaling(params: dict[str, Any], env: JobEnv) -> tuple[ray.train.ScalingConfig, int]:
    """Workers inside the job's budget: one per GPU when it has GPUs, else ``workers`` (default 1)
    sharing its CPUs. Returns the config and torch threads per worker."""
    import ray
    import ray.train

    gpus = env.gpus if env.gpus is not None else int(ray.cluster_resources().get("GPU", 0))
    workers = int(params.get("workers") or 0) or max(gpus, 1)
    cpus_per_worker = env.cpus / workers
    resources: dict[str, float] = {"CPU": cpus_per_worker}
    if gpus:
        resources["GPU"] = gpus / workers
    config = ray.train.ScalingConfig(num_workers=workers, use_gpu=gpus > 0, resources_per_worker=resources)
    return config, max(1, math.floor(cpus_per_worker))


def logical_gpus(gpus: int) -> bool:
    """The job holds GPUs but this machine has no CUDA: Ray's logical GPUs (``testbed up --gpus N``)."""
    return gpus > 0 and not torch.cuda.is_available()


# Ray Train v2 keeps one unconsumed report per worker and the controller collects it every health
# check (2 s by default), so epochs shorter than that would wait in ``report``. Polling faster keeps
# short epochs unthrottled; the driver propagates this to the controller and workers.
REPORT_POLL_ENV, REPORT_POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25"


def fit(prep: Prepared, env: JobEnv, run_name: str, run_id: str | None = None) -> ray.train.Result:
    """Train on Ray Train; raises ray.train.TrainingFailedError when retries are exhausted."""
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from workloads.worker import train_worker

    os.environ.setdefault(REPORT_POLL_ENV, REPORT_POLL_S)
    scaling_config, threads = scaling(prep.params, env)
    logical = logical_gpus(scaling_config.num_workers if scaling_config.use_gpu else 0)
    if logical:  # the workers still hold the job's GPUs (that is what is granted and charged)
        print(f"[testbed] {env.gpus} logical GPU(s) and no CUDA here: training on the CPU", flush=True)
    # A folder locally, an s3:// URI in a cluster (Ray Train writes either; Path() would fold the '//').
    storage = env.storage_path if "://" in env.storage_path else str(Path(env.storage_path).expanduser())
    worker = WorkerConfig(
        template=prep.template,
        params=prep.params,
        threads=threads,
        run_dir=f"{storage.rstrip('/')}/{run_name}",
        tracking_uri=env.tracking_uri if run_id else None,
        run_id=run_id,
        baseline=prep.baseline,
        class_weights=prep.class_weights,
    )
    trainer = TorchTrainer(
        train_loop_per_worker=train_worker,
        train_loop_config={"worker": worker.model_dump(), "train": ray.put(prep.train), "val": ray.put(prep.val)},
        scaling_config=scaling_config,
        torch_config=TorchConfig(backend="gloo") if logical else None,  # NCCL needs CUDA
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=int(prep.params.get("max_failures", 0))),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )
    return trainer.fit()


def runs_direct(params: dict[str, Any], env: JobEnv) -> bool:
    """Whether the loop runs in this process (``engine=auto``: a one-worker job without GPUs, where Ray Train's
    worker group would only add start-up) rather than on Ray Train (``engine=ray-train``, several workers, GPUs)."""
    engine = str(params.get("engine", "auto"))
    return engine == "direct" or (engine == "auto" and int(params.get("workers") or 1) == 1 and env.gpus == 0)


def fit_in_process(prep: Prepared, env: JobEnv, run_name: str, run_id: str | None = None) -> Any:
    """The one-worker loop in this process (``workloads/direct.py``), with the same checkpoints, retries and metrics."""
    from workloads.direct import fit_direct

    storage = env.storage_path if "://" in env.storage_path else str(Path(env.storage_path).expanduser())
    worker = WorkerConfig(
        template=prep.template,
        params=prep.params,
        threads=max(1, math.floor(env.cpus)),
        run_dir=f"{storage.rstrip('/')}/{run_name}",
        tracking_uri=env.tracking_uri if run_id else None,
        run_id=run_id,
        baseline=prep.baseline,
        class_weights=prep.class_weights,
    )
    return fit_direct(prep.template, prep.params, prep.train, prep.val, worker)


def failure_line(exc: BaseException) -> str:
    """One line for a failed training: the first worker's error (its traceback's last line) if known."""
    failures = getattr(exc, "worker_failures", None)
    cause = next(iter(failures.values())) if failures else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    if not lines:
        return type(cause).__name__
    # a worker's traceback ends "module.SomeError: message": the company reads the message
    return re.sub(r"^[A-Za-z_][\w.]*(Error|Exception|Failure): ", "", lines[-1]) or lines[-1]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        template, params = parse_args(argv, kinds=("train",))
        env = JobEnv.from_environ()
        prep = prepare(template.name, params)
    except (TemplateError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(prep.preprocessing_report(), flush=True)
    if int(prep.params.get("trials", 1)) > 1:
        return main_search(prep, env)
    direct = runs_direct(prep.params, env)
    if not direct:
        connect_ray(env)
    experiment_id = use_experiment(env, template.name)
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=f"{template.name}-{env.job_id}", tags=env.tags("train"))
    run_id = run.info.run_id
    started = time.perf_counter()
    try:
        if direct:
            result: Any = fit_in_process(prep, env, run_name=f"{template.name}-{env.job_id}", run_id=run_id)
        else:
            result = fit(prep, env, run_name=f"{template.name}-{env.job_id}", run_id=run_id)
    except Exception as exc:
        if type(exc).__name__ not in ("TrainingFailedError", "TrainingFailed"):
            raise
        client.set_terminated(run_id, "FAILED")
        print(f"error: training failed: {failure_line(exc)}", file=sys.stderr)
        return 1
    print(
        f"timing: engine={'direct' if direct else 'ray-train'} loop_seconds={float(result.metrics.get('loop_seconds', 0)):.3f} "
        f"driver_to_loop_end_seconds={time.perf_counter() - started:.3f}",
        flush=True,
    )
    if result.checkpoint is None:
        client.set_terminated(run_id, "FAILED")
        print("error: training finished without a checkpoint", file=sys.stderr)
        return 1
    with result.checkpoint.as_directory() as folder:
        model = load_state(folder, prep.task.build_model(prep.params, prep.train))
    neural = float(result.metrics[f"best_val_{prep.task.metric}"])
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metric("wall_seconds", time.perf_counter() - started)
        line = finish(prep, env, model, neural, result.metrics, threads=max(1, math.floor(env.cpus)))
    print(line)
    return 0


def main_search(prep: Prepared, env: JobEnv) -> int:
    """``trials`` > 1: a Ray Tune search (``workloads/search.py``) under the job's run, the best trial registered."""
    from workloads.direct import TrainingFailed
    from workloads.search import search

    connect_ray(env)
    experiment_id = use_experiment(env, prep.template)
    client = mlflow.MlflowClient()
    run_name = f"{prep.template}-{env.job_id}"
    run_id = client.create_run(experiment_id, run_name=run_name, tags=env.tags("train")).info.run_id
    storage = env.storage_path if "://" in env.storage_path else str(Path(env.storage_path).expanduser())
    started = time.perf_counter()
    try:
        line = search(prep, env, experiment_id, run_id, run_name, storage)
    except TrainingFailed as exc:
        client.set_terminated(run_id, "FAILED")
        print(f"error: search failed: {exc}", file=sys.stderr)
        return 1
    client.log_metric(run_id, "wall_seconds", time.perf_counter() - started)
    print(line)
    return 0


def finish(
    prep: Prepared,
    env: JobEnv,
    model: Any,
    neural: float,
    metrics: dict[str, Any],
    threads: int,
    version_tags: dict[str, str] | None = None,
) -> str:
    """In the active run: fit the classical baselines on the same split, log their metrics, register the
    neural model (or the classical one where it won) and word the ``result:`` line."""
    from workloads.baselines import best_baseline, fit_baselines, matches

    task, m = prep.task, prep.task.metric
    name = registered_model_name(env.tenant, prep.template)
    comparison = ""
    winner = "neural"
    best = None
    if prep.params.get("baselines", True):
        baselines = fit_baselines(
            prep.template, task, prep.train, prep.val, prep.class_weights, int(prep.params["seed"]), threads
        )
        best = best_baseline(task, baselines)
        classical = best.metrics[m]
        margin = float(prep.params.get("match_margin", 0.0))
        beats = task.better(neural, classical) > 0
        if not matches(task, neural, classical, margin):
            winner = "classical"
        mlflow.log_metrics(
            {
                **{f"classical_{b.name}_val_{k}": v for b in baselines for k, v in b.metrics.items()},
                **{f"classical_{b.name}_seconds": b.seconds for b in baselines},
                f"classical_best_val_{m}": classical,
                "neural_beats_classical": float(beats),
                "registered_classical": float(winner == "classical"),
            }
        )
        mlflow.set_tags({"testbed.classical_best": best.name, "testbed.registered": winner})
        verdict = (
            "neural beats classical"
            if beats
            else "neural matches classical within margin"
            if winner == "neural"
            else "classical model wins: the neural model is behind by more than the margin, registering the classical one"
        )
        comparison = (
            f"classical_best={best.name} classical_val_{m}={classical:.4f} "
            f"neural_beats_classical={'yes' if beats else 'no'} registered={winner} ({verdict}) "
        )
    version = register_model(
        prep, env, model, name, classical=best if winner == "classical" else None, best=best, version_tags=version_tags
    )
    shown = best.metrics[m] if winner == "classical" and best else neural
    return (
        f"result: template={prep.template} val_{m}={shown:.4f} neural_val_{m}={neural:.4f} "
        f"best_epoch={int(metrics.get('best_epoch', -1))} "
        f"baseline_val_{m}={prep.baseline:.4f} ({task.baseline_name}) {comparison}"
        f"start_epoch={int(metrics.get('start_epoch', 0))} model={name} version={version} run_id={mlflow.active_run().info.run_id}"
    )


def register_model(
    prep: Prepared,
    env: JobEnv,
    model: Any,
    name: str,
    classical: Any = None,
    best: Any = None,
    version_tags: dict[str, str] | None = None,
) -> str:
    """Log the trained model with its task layout to the active run and register it as ``name``; with
    ``classical`` (a winning Baseline) register that one instead. The best baseline is logged either way
    (``classical`` in the run) so the validation gate can compare with it on held-out data."""
    from workloads.registry import log_and_register, log_classical

    info = {
        "template": prep.template,
        "params": prep.params,
        "metric": prep.task.metric,
        "feature_names": prep.train.feature_names,
        "classes": prep.train.classes,
        "registered": "classical" if classical is not None else "neural",
        "classical": best.name if best is not None else None,
    }
    tags = {
        "testbed.tenant": env.tenant,
        "testbed.job_id": env.job_id,
        "testbed.template": prep.template,
        **(version_tags or {}),
    }
    example = prep.val.x[:4]
    if best is not None:
        version = log_classical(
            prep.template,
            prep.task,
            best,
            prep.train,
            example,
            name if classical is not None else None,
            {**tags, "testbed.flavor": "classical"},
        )
        if classical is not None:
            mlflow.log_dict(info, "testbed/task.json")
            return version
    return log_and_register(model, example, name, info, {**tags, "testbed.flavor": "torch"})


if __name__ == "__main__":
    sys.exit(main())
