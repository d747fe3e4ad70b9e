"""What every template's task provides: its data, its model, its loss, metric and trivial baseline."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

Params = dict[str, Any]


@dataclass
class Dataset:
    """Model inputs ``x`` (float32), targets ``y`` (int64 classes or float32 (N, 1)), split groups."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    feature_names: list[str]
    classes: list[str] = field(default_factory=list)
    chronological: bool = False
    missing: dict[str, int] = field(default_factory=dict)  # column -> missing values in the source (imputed)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> "Dataset":
        return Dataset(
            self.x[mask],
            self.y[mask],
            self.groups[mask],
            self.feature_names,
            self.classes,
            self.chronological,
            self.missing,
        )


def split(data: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Train / validation split by group (a machine, a batch): the last groups in time when
    chronological, else a seeded random choice of groups."""
    groups = np.unique(data.groups) if not data.chronological else np.sort(np.unique(data.groups))
    n_val = max(1, math.ceil(val_fraction * len(groups)))
    if n_val >= len(groups):
        raise ValueError(f"cannot hold out {val_fraction:.0%} of {len(groups)} groups and keep some for training")
    val_groups = groups[-n_val:] if data.chronological else np.random.default_rng(seed).permutation(groups)[:n_val]
    is_val = np.isin(data.groups, val_groups)
    return data.subset(~is_val), data.subset(is_val)


class Task(ABC):
    """A template's task. ``metric`` is the one the validation gate compares."""

    name: ClassVar[str]
    problem: ClassVar[Literal["classification", "regression"]]
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    baseline_name: ClassVar[str]

    @abstractmethod
    def dataset(self, params: Params, seed: int, feature_names: list[str] | None = None) -> Dataset:
        """The data from ``params['data_path']`` or generated with ``seed``; DataError if unusable.

        ``feature_names`` (from a trained model) fixes the encoding of held-out data."""

    @abstractmethod
    def build_model(self, params: Params, train: Dataset) -> nn.Module:
        """A fresh model whose input statistics come from ``train``."""

    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss; ``weight``: per-class weights (classification, imbalanced labels)."""

    @abstractmethod
    def metrics(self, output: np.ndarray, target: np.ndarray) -> dict[str, float]: ...

    @abstractmethod
    def baseline(self, train: Dataset, evaluation: Dataset) -> float:
        """The trivial baseline's ``metric`` on ``evaluation``."""

    def class_weights(self, train: Dataset) -> list[float] | None:
        """Per-class loss weights fitted on the training labels; None when not needed."""
        return None

    def classical_features(self, x: np.ndarray) -> np.ndarray:
        """The inputs as one row of numbers per sample, for the classical baselines."""
        return x.reshape(len(x), -1)

    def better(self, a: float, b: float) -> float:
        """How much better ``a`` is than ``b`` (positive is better) in this task's metric."""
        return a - b if self.higher_is_better else b - a


class ClassificationTask(Task):
    problem = "classification"
    metric = "accuracy"
    higher_is_better = True
    baseline_name = "majority class"

    # labels whose rarest class is this many times less frequent than the commonest get balanced weights
    IMBALANCE_RATIO = 1.5

    def loss(self, output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return nn.functional.cross_entropy(output, target, weight=weight)

    def class_weights(self, train: Dataset) -> list[float] | None:
        """Balanced weights ``n / (classes * count)`` when the training labels are imbalanced (as scikit-learn's
        ``class_weight='balanced'``); a class absent from training gets weight 1."""
        classes = max(len(train.classes), int(train.y.max()) + 1)
        counts = np.bincount(train.y, minlength=classes).astype(np.float64)
        present = counts[counts > 0]
        if present.max() < self.IMBALANCE_RATIO * present.min():
            return None
        return [float(len(train.y) / (len(present) * c)) if c else 1.0 for c in counts]

    def metrics(self, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
        predicted = output.argmax(axis=1)
        f1s = []
        for c in np.unique(np.concatenate([target, predicted])):
            tp = np.sum((predicted == c) & (target == c))
            denominator = np.sum(predicted == c) + np.sum(target == c)
            f1s.append(2 * tp / denominator if denominator else 0.0)
        return {"accuracy": float(np.mean(predicted == target)), "macro_f1": float(np.mean(f1s))}

    def baseline(self, train: Dataset, evaluation: Dataset) -> float:
        majority = np.bincount(train.y).argmax()
        return float(np.mean(evaluation.y == majority))


class RegressionTask(Task):
    problem = "regression"
    metric = "mae"
    higher_is_better = False
    baseline_name = "mean"

    def loss(self, output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return nn.functional.mse_loss(output, target)

    def metrics(self, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
        err = output.reshape(-1) - target.reshape(-1)
        return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}

    def baseline(self, train: Dataset, evaluation: Dataset) -> float:
        prediction = np.full_like(evaluation.y, train.y.mean())
        return self.metrics(prediction, evaluation.y)[self.metric]


def column_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``."""
    return [c.strip() for c in str(text).split(",") if c.strip()]
