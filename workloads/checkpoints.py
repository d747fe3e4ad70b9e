"""What the training entrypoints share without Ray: the checkpoint file, the worker's config, the fault drill,
rank 0's MLflow run and loading the best weights. Importing it does not import Ray (a one-worker job runs
without it: ``workloads/direct.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import torch
from pydantic import BaseModel

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
    class_weights: list[float] | None = None


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
    """Load a checkpoint folder's best-epoch weights (early stopping restores them) into ``model``."""
    state = torch.load(Path(checkpoint_dir) / STATE_FILE, map_location="cpu", weights_only=False)
    best = state.get("best") or {}
    model.load_state_dict(best.get("weights") or state["model"])
    return model
