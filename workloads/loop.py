"""The training loop, shared by the Ray Train worker and the plain-PyTorch benchmark."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

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


class TensorBatches:
    """Shuffled mini-batches of an in-memory dataset, this rank's share only.

    Like ``DataLoader`` + ``DistributedSampler`` (every rank gets the same number of samples, a
    new order each epoch via ``set_epoch``) but indexes whole batches at once instead of per-sample
    Python calls, so the loop stays compute-bound.
    """

    def __init__(
        self, data: Dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ) -> None:
        self.x, self.y = torch.tensor(data.x), torch.tensor(data.y)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.per_rank = len(data) // world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        order = (
            torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
            if self.shuffle
            else torch.arange(n)
        )
        mine = order[self.rank : self.per_rank * self.world_size : self.world_size]
        for start in range(0, len(mine), self.batch_size):
            index = mine[start : start + self.batch_size]
            yield self.x[index], self.y[index]


class BestEpoch:
    """Early stopping on the validation split: remembers the best epoch's weights (restored at the end) and
    says stop after ``patience`` epochs without improvement (0: never stop early)."""

    def __init__(self, task: Task, patience: int = 0) -> None:
        self.metric, self.higher, self.patience = f"val_{task.metric}", task.higher_is_better, patience
        self.epoch, self.score, self.weights = -1, math.nan, None
        self.stopped_early = False

    def update(self, epoch: int, metrics: dict[str, float], model: torch.nn.Module) -> bool:
        """Record ``epoch``; True when training should stop here."""
        score = metrics[self.metric]
        if self.epoch < 0 or (score > self.score if self.higher else score < self.score):
            bare = model.module if hasattr(model, "module") else model
            self.epoch, self.score = epoch, score
            self.weights = {k: v.detach().cpu().clone() for k, v in bare.state_dict().items()}
        self.stopped_early = self.patience > 0 and epoch - self.epoch >= self.patience
        return self.stopped_early

    def metrics(self) -> dict[str, float]:
        return {"best_epoch": float(self.epoch), f"best_{self.metric}": self.score}

    def state_dict(self) -> dict[str, object]:
        return {"epoch": self.epoch, "score": self.score, "weights": self.weights}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.epoch, self.score, self.weights = int(state["epoch"]), float(state["score"]), state["weights"]  # type: ignore[arg-type]


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
    train_loader: TensorBatches,
    val: Dataset,
    *,
    start_epoch: int,
    epochs: int,
    device: torch.device,
    on_epoch_end: EpochCallback | None = None,
    class_weights: list[float] | None = None,
    best: BestEpoch | None = None,
) -> LoopStats:
    """Train epochs ``start_epoch..epochs-1``; after each, evaluate on ``val``, update ``best`` (early stopping)
    and call ``on_epoch_end``; stops early when ``best`` says so."""
    stats = LoopStats()
    weight = torch.tensor(class_weights, dtype=torch.float32, device=device) if class_weights else None
    started: float | None = None
    for epoch in range(start_epoch, epochs):
        train_loader.set_epoch(epoch)
        model.train()
        total_loss, seen = 0.0, 0
        batch_started = time.perf_counter()
        started = started or batch_started
        for xb, yb in train_loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(model(xb), yb, weight)
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
        stop = best.update(epoch, metrics, model) if best is not None else False
        if best is not None:
            metrics.update(best.metrics())
        stats.metrics = metrics
        if on_epoch_end is not None:
            on_epoch_end(epoch, {**metrics, **stats.timing()})
        if stop:
            break
    return stats
