"""A one-worker CPU job's loop in the job's own process, without Ray Train's worker group (its start-up is most
of a small job's wall time). What a company sees stays the same as under Ray Train:

- every epoch a checkpoint (model, optimizer, epoch, the best epoch's weights; ``state.pt``, the same file) in
  ``<storage>/<run name>/checkpoint_<epoch>`` (a folder locally, ``s3://`` in a cluster), the last two kept;
- ``max_failures``: a failed attempt restarts from the latest checkpoint; the ``fail_at_epoch`` drill fails once
  (the same marker file) and the metric ``attempt_start_epoch`` records each restart;
- the same per-epoch metrics, timing metrics and system metrics in the job's MLflow run.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem

from workloads.loop import TIMING_KEYS, BestEpoch, TensorBatches, run_epochs
from workloads.checkpoints import STATE_FILE, WorkerConfig, _inject_failure, _rank0_run

KEEP_CHECKPOINTS = 2


class TrainingFailed(RuntimeError):
    """Every attempt failed; the message is the last failure."""


@dataclass
class LocalCheckpoint:
    """A checkpoint folder (local or remote) with Ray's ``Checkpoint.as_directory`` interface."""

    url: str

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        fs, path = fsspec.core.url_to_fs(self.url)
        if isinstance(fs, LocalFileSystem):
            yield path
            return
        with tempfile.TemporaryDirectory() as folder:
            fs.get(f"{path}/{STATE_FILE}", f"{folder}/{STATE_FILE}")
            yield folder


@dataclass
class DirectResult:
    """What ``TorchTrainer.fit()`` answers, as far as the entrypoint uses it."""

    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint: LocalCheckpoint | None = None


def _checkpoints(fs: Any, run_dir: str) -> list[str]:
    if not fs.isdir(run_dir):
        return []
    return sorted(p for p in fs.ls(run_dir, detail=False) if p.rstrip("/").rsplit("/", 1)[-1].startswith("checkpoint_"))


def fit_direct(template: str, params: dict[str, Any], train: Any, val: Any, cfg: WorkerConfig) -> DirectResult:
    """Train in this process with checkpoints, retries and MLflow logging as a Ray Train worker does."""
    from workloads.tasks import get_task

    task = get_task(template)
    torch.set_num_threads(cfg.threads)
    fs, run_dir = fsspec.core.url_to_fs(cfg.run_dir)
    attempts = int(params.get("max_failures", 0)) + 1
    result = DirectResult()
    for attempt in range(attempts):
        try:
            result = _attempt(task, params, train, val, cfg, fs, run_dir)
            return result
        except Exception as exc:  # the drill's InjectedFailure or a real error: restart from the last checkpoint
            if attempt + 1 >= attempts:
                raise TrainingFailed(f"{type(exc).__name__}: {exc}") from exc
    return result


def _attempt(
    task: Any, params: dict[str, Any], train: Any, val: Any, cfg: WorkerConfig, fs: Any, run_dir: str
) -> DirectResult:
    torch.manual_seed(int(params["seed"]))
    model = task.build_model(params, train)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params["lr"]))
    best = BestEpoch(task, int(params.get("patience", 0)))
    start_epoch = 0
    existing = _checkpoints(fs, run_dir)
    if existing:
        with fs.open(f"{existing[-1]}/{STATE_FILE}", "rb") as handle:
            state = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("best"):
            best.load_state_dict(state["best"])
        start_epoch = int(state["epoch"]) + 1
    loader = TensorBatches(train, int(params["batch_size"]), int(params["seed"]))
    fail_at = int(params.get("fail_at_epoch", 0))
    result = DirectResult()

    with _rank0_run(cfg, 0) as mlflow:
        if mlflow is not None:
            mlflow.log_params(
                {
                    "template": cfg.template,
                    **params,
                    "train_samples": len(train),
                    "val_samples": len(val),
                    "engine": "direct",
                }
            )
            mlflow.log_metric("attempt_start_epoch", start_epoch, step=start_epoch)
            if cfg.baseline is not None:
                mlflow.log_metric(f"baseline_val_{task.metric}", cfg.baseline)

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            if fail_at > 0 and epoch == fail_at:
                _inject_failure(cfg.run_dir, epoch)
            folder = f"{run_dir}/checkpoint_{epoch:06d}"
            fs.makedirs(folder, exist_ok=True)
            buffer = io.BytesIO()
            torch.save(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "best": best.state_dict(),
                },
                buffer,
            )
            fs.pipe_file(f"{folder}/{STATE_FILE}", buffer.getvalue())
            for old in _checkpoints(fs, run_dir)[:-KEEP_CHECKPOINTS]:
                fs.rm(old, recursive=True)
            result.metrics = {**metrics, "start_epoch": start_epoch, "epoch": epoch}
            result.checkpoint = LocalCheckpoint(f"{cfg.run_dir}/checkpoint_{epoch:06d}")
            if mlflow is not None:
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
            device=torch.device("cpu"),
            on_epoch_end=on_epoch_end,
            class_weights=cfg.class_weights,
            best=best,
        )
        result.metrics.update(stats.timing())
        if mlflow is not None:
            mlflow.log_metrics({k: float(v) for k, v in stats.timing().items()})
            mlflow.flush_async_logging()
    if result.checkpoint is None and existing:  # resumed after the last epoch: nothing left to train
        result.checkpoint = LocalCheckpoint(f"{cfg.run_dir}/{existing[-1].rstrip('/').rsplit('/', 1)[-1]}")
        result.metrics = {**best.metrics(), "start_epoch": start_epoch}
    return result
