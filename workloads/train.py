"""Training entrypoint: ``python -m workloads.train --template NAME --<param>=<value> ...``.

Runs the template's task on Ray Train (TorchTrainer, DDP) inside the job's CPU/GPU budget,
checkpoints every epoch to the job's storage path, resumes from the latest checkpoint after a
worker failure, logs to MLflow from rank 0 and registers the model as ``<tenant>.<template>``.
Runs standalone too (``ray job submit -- python -m workloads.train ...``) with local defaults.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import ray
import ray.train
import torch
from ray.train.torch import TorchConfig, TorchTrainer

from testbed.templates import TemplateError
from workloads.cli import parse_args
from workloads.data import DataError
from workloads.jobenv import JobEnv
from workloads.tasks import Dataset, Task, get_task, split
from workloads.tracking import registered_model_name, use_experiment
from workloads.worker import WorkerConfig, load_state, train_worker


@dataclass
class Prepared:
    """A template's task, resolved params and train / validation data."""

    template: str
    task: Task
    params: dict[str, Any]
    train: Dataset
    val: Dataset

    @property
    def baseline(self) -> float:
        return self.task.baseline(self.train, self.val)


def prepare(template: str, params: dict[str, Any]) -> Prepared:
    """Load or generate the data and split it; DataError if the data is unusable."""
    task = get_task(template)
    data = task.dataset(params, seed=int(params["seed"]))
    train, val = split(data, float(params["val_fraction"]), int(params["seed"]))
    return Prepared(template, task, params, train, val)


def connect_ray(env: JobEnv) -> None:
    """Join the job's cluster (RAY_ADDRESS, as under ``ray job submit``) or start a local one on 127.0.0.1."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(num_cpus=max(1, math.ceil(env.cpus)), include_dashboard=False, _node_ip_address="127.0.0.1")


def scaling(params: dict[str, Any], env: JobEnv) -> tuple[ray.train.ScalingConfig, int]:
    """Workers inside the job's budget: one per GPU when it has GPUs, else ``workers`` (default 1)
    sharing its CPUs. Returns the config and torch threads per worker."""
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
    os.environ.setdefault(REPORT_POLL_ENV, REPORT_POLL_S)
    scaling_config, threads = scaling(prep.params, env)
    logical = logical_gpus(scaling_config.num_workers if scaling_config.use_gpu else 0)
    if logical:  # the workers still hold the job's GPUs (that is what is granted and charged)
        print(f"[testbed] {env.gpus} logical GPU(s) and no CUDA here: training on the CPU", flush=True)
    # A folder locally, an s3:// URI in a cluster (Ray Train writes either; Path() would fold the '//').
    storage = env.storage_path if "://" in env.storage_path else str(Path(env.storage_path).expanduser())
    worker = WorkerConfig(
        template=prep.template, params=prep.params, threads=threads, run_dir=f"{storage.rstrip('/')}/{run_name}",
        tracking_uri=env.tracking_uri if run_id else None, run_id=run_id, baseline=prep.baseline,
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


def failure_line(exc: BaseException) -> str:
    """One line for a failed training: the first worker's error (its traceback's last line) if known."""
    failures = getattr(exc, "worker_failures", None)
    cause = next(iter(failures.values())) if failures else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__


def main(argv: Sequence[str] | None = None) -> int:
    try:
        template, params = parse_args(argv, kinds=("train",))
        env = JobEnv.from_environ()
        prep = prepare(template.name, params)
    except (TemplateError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    connect_ray(env)
    experiment_id = use_experiment(env, template.name)
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=f"{template.name}-{env.job_id}", tags=env.tags("train"))
    run_id = run.info.run_id
    started = time.perf_counter()
    try:
        result = fit(prep, env, run_name=f"{template.name}-{env.job_id}", run_id=run_id)
    except ray.train.TrainingFailedError as exc:
        client.set_terminated(run_id, "FAILED")
        print(f"error: training failed: {failure_line(exc)}", file=sys.stderr)
        return 1
    if result.checkpoint is None:
        client.set_terminated(run_id, "FAILED")
        print("error: training finished without a checkpoint", file=sys.stderr)
        return 1
    with result.checkpoint.as_directory() as folder:
        model = load_state(folder, prep.task.build_model(prep.params, prep.train))
    name = registered_model_name(env.tenant, template.name)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metric("wall_seconds", time.perf_counter() - started)
        version = register_model(prep, env, model, name)
    metric = f"val_{prep.task.metric}"
    print(
        f"result: template={template.name} {metric}={result.metrics[metric]:.4f} "
        f"baseline_{metric}={prep.baseline:.4f} ({prep.task.baseline_name}) "
        f"start_epoch={int(result.metrics.get('start_epoch', 0))} model={name} version={version} run_id={run_id}"
    )
    return 0


def register_model(prep: Prepared, env: JobEnv, model: Any, name: str) -> str:
    """Log the trained model with its task layout to the active run and register it as ``name``."""
    from workloads.registry import log_and_register

    info = {
        "template": prep.template, "params": prep.params, "metric": prep.task.metric,
        "feature_names": prep.train.feature_names, "classes": prep.train.classes,
    }
    tags = {"testbed.tenant": env.tenant, "testbed.job_id": env.job_id, "testbed.template": prep.template}
    return log_and_register(model, prep.val.x[:4], name, info, tags)


if __name__ == "__main__":
    sys.exit(main())
