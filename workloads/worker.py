"""The Ray Train worker: data from the object store (each rank trains on its shard), DDP model,
checkpoints, rank-0 MLflow logging."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch

from workloads.checkpoints import STATE_FILE, InjectedFailure, WorkerConfig, _inject_failure, _rank0_run, load_state
from workloads.loop import TIMING_KEYS, BestEpoch, TensorBatches, run_epochs
from workloads.tasks import Dataset, get_task


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` for TorchTrainer; config: ``worker`` (a WorkerConfig dump), ``train``, ``val`` refs."""
    cfg = WorkerConfig(**config["worker"])
    rank = ray.train.get_context().get_world_rank()
    torch.set_num_threads(cfg.threads)
    train, val = ray.get([config["train"], config["val"]])
    task, params = get_task(cfg.template), cfg.params
    torch.manual_seed(int(params["seed"]))
    model = task.build_model(params, train)
    state, start_epoch = _restore()
    best = BestEpoch(task, int(params.get("patience", 0)))
    if state:
        model.load_state_dict(state["model"])
        if state.get("best"):
            best.load_state_dict(state["best"])
    # Logical GPUs (no CUDA: `testbed up --gpus N`) train on the CPU; real ones on the worker's GPU.
    device = ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")
    model = ray.train.torch.prepare_model(model, move_to_device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params["lr"]))
    if state:
        optimizer.load_state_dict(state["optimizer"])
    context = ray.train.get_context()
    loader = TensorBatches(train, int(params["batch_size"]), int(params["seed"]), rank, context.get_world_size())
    fail_at = int(params.get("fail_at_epoch", 0))

    with _rank0_run(cfg, rank) as mlflow:
        if mlflow is not None:
            mlflow.log_params(
                {"template": cfg.template, **params, "train_samples": len(train), "val_samples": len(val)}
            )
            mlflow.log_metric("attempt_start_epoch", start_epoch, step=start_epoch)
            if cfg.baseline is not None:
                mlflow.log_metric(f"baseline_val_{task.metric}", cfg.baseline)

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            if rank == 0 and fail_at > 0 and epoch == fail_at:
                _inject_failure(cfg.run_dir, epoch)
            _report(epoch, {**metrics, "start_epoch": start_epoch}, model, optimizer, rank, best)
            if mlflow is not None:
                # asynchronous: the tracking server's latency stays off the training loop
                mlflow.log_metrics(
                    {k: v for k, v in metrics.items() if k not in TIMING_KEYS}, step=epoch, synchronous=False
                )

        stats = run_epochs(
            model,
            optimizer,
            task,
            loader,
            val,
            start_epoch=start_epoch,
            epochs=int(params["epochs"]),
            device=device,
            on_epoch_end=on_epoch_end,
            class_weights=cfg.class_weights,
            best=best,
        )
        if mlflow is not None:
            mlflow.log_metrics({k: float(v) for k, v in stats.timing().items()})
            mlflow.flush_async_logging()


def _restore() -> tuple[dict[str, Any] | None, int]:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None, 0
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
    return state, int(state["epoch"]) + 1


def _report(
    epoch: int,
    metrics: dict[str, float],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rank: int,
    best: BestEpoch,
) -> None:
    """Every rank reports; rank 0 attaches the checkpoint (model and optimizer state, epoch, the best epoch's weights)."""
    if rank != 0:
        ray.train.report({**metrics, "epoch": epoch})
        return
    with tempfile.TemporaryDirectory() as folder:
        bare = model.module if hasattr(model, "module") else model
        state = {
            "epoch": epoch,
            "model": bare.state_dict(),
            "optimizer": optimizer.state_dict(),
            "best": best.state_dict(),
        }
        torch.save(state, Path(folder) / STATE_FILE)
        ray.train.report({**metrics, "epoch": epoch}, checkpoint=ray.train.Checkpoint.from_directory(folder))


__all__ = ["Dataset", "InjectedFailure", "WorkerConfig", "load_state", "train_worker"]
