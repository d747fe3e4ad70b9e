"""The training loop, shared by the Ray Train worker and the plain-PyTorch benchmark."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from workloads.tasks import Dataset, Task

EpochCallback = Callable[[int, dict[str, float]], None]
TIMING_KEYS = ("loop_seconds", "train_seconds", "loop_samples", "samples_per_second", "epoch_seconds_median")


@dataclass
class LoopStats:
    """What the loop did: samples seen, wall time from the first batch to the end of the last epoch's
    evaluation (earlier epochs' callbacks included) and time spent in training batches alone."""

    epochs_run: int = 0
    samples: int = 0
    loop_seconds: float = 0.0
    train_seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)

    def timing(self) -> dict[str, float]:
        """Loop timing so far, as metrics (the last epoch's callback is not yet included)."""
        return {
            "loop_seconds": self.loop_seconds,
            "train_seconds": self.train_seconds,
            "loop_samples": float(self.samples),
            "samples_per_second": self.samples / self.loop_seconds if self.loop_seconds else 0.0,
            "epoch_seconds_median": statistics.median(self.epoch_seconds) if self.epoch_seconds else 0.0,
        }


def make_loader(data: Dataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    tensors = TensorDataset(torch.from_numpy(data.x), torch.from_numpy(data.y))
    return DataLoader(tensors, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, device: torch.device, batch_size: int = 2048) -> np.ndarray:
    with contextlib.suppress(NotImplementedError):  # models loaded from MLflow (torch.export) are fixed in eval mode
        model.eval()
    outputs = [model(torch.from_numpy(x[i : i + batch_size]).to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outputs).numpy()


def run_epochs(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    task: Task,
    train_loader: DataLoader,
    val: Dataset,
    *,
    start_epoch: int,
    epochs: int,
    device: torch.device,
    on_epoch_end: EpochCallback | None = None,
) -> LoopStats:
    """Train epochs ``start_epoch..epochs-1``; after each, evaluate on ``val`` and call ``on_epoch_end``."""
    stats = LoopStats()
    started: float | None = None
    for epoch in range(start_epoch, epochs):
        if isinstance(getattr(train_loader, "sampler", None), DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        model.train()
        total_loss, seen = 0.0, 0
        batch_started = time.perf_counter()
        started = started or batch_started
        for xb, yb in train_loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(model(xb), yb)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(yb)
            seen += len(yb)
        stats.train_seconds += time.perf_counter() - batch_started
        stats.samples += seen
        metrics = {"train_loss": total_loss / max(seen, 1)}
        metrics.update({f"val_{k}": v for k, v in task.metrics(predict(model, val.x, device), val.y).items()})
        stats.epochs_run += 1
        stats.epoch_seconds.append(time.perf_counter() - batch_started)
        stats.loop_seconds = time.perf_counter() - started
        stats.metrics = metrics
        if on_epoch_end is not None:
            on_epoch_end(epoch, {**metrics, **stats.timing()})
    return stats
