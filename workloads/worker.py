"""The Ray Train worker: data from the object store (each rank trains on its shard), DDP model,
checkpoints, rank-0 MLflow logging."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import ray
import ray.train
import ray.train.torch
import torch
from pydantic import BaseModel

from workloads.loop import TIMING_KEYS, TensorBatches, run_epochs
from workloads.tasks import Dataset, get_task

STATE_FILE = "state.pt"


class InjectedFailure(RuntimeError):
    """Raised once by rank 0 when ``fail_at_epoch`` asks for a fault-tolerance drill."""


class WorkerConfig(BaseModel):
    """Everything a worker needs besides the data (which travels as object refs)."""

    template: str
    params: dict[str, Any]
    threads: int
    run_dir: str
    tracking_uri: str | None = None
    run_id: str | None = None
    baseline: float | None = None


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
    if state:
        model.load_state_dict(state["model"])
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
            mlflow.log_params({"template": cfg.template, **params, "train_samples": len(train), "val_samples": len(val)})
            mlflow.log_metric("attempt_start_epoch", start_epoch, step=start_epoch)
            if cfg.baseline is not None:
                mlflow.log_metric(f"baseline_val_{task.metric}", cfg.baseline)

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            if rank == 0 and fail_at > 0 and epoch == fail_at:
                _inject_failure(cfg.run_dir, epoch)
            _report(epoch, {**metrics, "start_epoch": start_epoch}, model, optimizer, rank)
            if mlflow is not None:
                # asynchronous: the tracking server's latency stays off the training loop
                mlflow.log_metrics({k: v for k, v in metrics.items() if k not in TIMING_KEYS}, step=epoch, synchronous=False)

        stats = run_epochs(
            model, optimizer, task, loader, val,
            start_epoch=start_epoch, epochs=int(params["epochs"]),
            device=device, on_epoch_end=on_epoch_end,
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


def _report(epoch: int, metrics: dict[str, float], model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int) -> None:
    """Every rank reports; rank 0 attaches the checkpoint (model and optimizer state, epoch)."""
    if rank != 0:
        ray.train.report({**metrics, "epoch": epoch})
        return
    with tempfile.TemporaryDirectory() as folder:
        bare = model.module if hasattr(model, "module") else model
        torch.save({"epoch": epoch, "model": bare.state_dict(), "optimizer": optimizer.state_dict()}, Path(folder) / STATE_FILE)
        ray.train.report({**metrics, "epoch": epoch}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _inject_failure(run_dir: str, epoch: int) -> None:
    """Fail once at ``epoch``: a marker in the run's folder (local or s3://) remembers it across restarts."""
    fs, marker = fsspec.core.url_to_fs(f"{run_dir}/injected-failure-epoch-{epoch}")
    if fs.exists(marker):
        return
    fs.makedirs(marker.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(marker, b"rank 0 failed here once on purpose\n")
    raise InjectedFailure(f"injected failure at epoch {epoch} (fail_at_epoch drill)")


@contextlib.contextmanager
def _rank0_run(cfg: WorkerConfig, rank: int) -> Iterator[Any]:
    """On rank 0 with a run id: the job's MLflow run, resumed with system metrics; else None."""
    if rank != 0 or not cfg.run_id or not cfg.tracking_uri:
        yield None
        return
    import mlflow

    from workloads.tracking import enable_fast_system_metrics

    mlflow.set_tracking_uri(cfg.tracking_uri)
    enable_fast_system_metrics()
    with mlflow.start_run(run_id=cfg.run_id, log_system_metrics=True):
        yield mlflow


def load_state(checkpoint_dir: str, model: torch.nn.Module) -> torch.nn.Module:
    """Load a checkpoint folder's model weights into ``model``."""
    state = torch.load(Path(checkpoint_dir) / STATE_FILE, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    return model


__all__ = ["Dataset", "InjectedFailure", "WorkerConfig", "load_state", "train_worker"]
