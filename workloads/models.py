"""Small torch models for the templates. Each takes raw inputs and standardises them itself,
so a registered model can be served (and validated) on raw data."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Standardize(nn.Module):
    """The preprocessing fitted on the training split, kept as buffers so the registered model takes raw
    inputs: a missing value (NaN) becomes the training median, then (x - mean) / std; a feature that
    is constant in training (e.g. a category never seen there) is zeroed rather than trusted."""

    def __init__(
        self, mean: np.ndarray | float, std: np.ndarray | float, fill: np.ndarray | float | None = None
    ) -> None:
        super().__init__()
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32))
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", torch.where(std_t > 1e-6, std_t, torch.ones_like(std_t)))
        self.register_buffer("keep", (std_t > 1e-6).to(torch.float32))
        self.register_buffer("fill", torch.as_tensor(np.asarray(mean if fill is None else fill, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.where(torch.isnan(x), self.fill.expand_as(x), x)
        return (x - self.mean) / self.std * self.keep

    @classmethod
    def fitted(cls, x: np.ndarray, axis: int | tuple[int, ...] | None) -> "Standardize":
        """Statistics of the training inputs ``x`` over ``axis`` (None: one for all), missing values ignored."""
        filled = np.where(np.isnan(x), np.nanmedian(x, axis=axis, keepdims=True), x) if np.isnan(x).any() else x
        return cls(np.mean(filled, axis=axis), np.std(filled, axis=axis), np.nanmedian(x, axis=axis))


class SmallCNN(nn.Module):
    """Three conv blocks (batch-normalised) and a linear head: grayscale (N, 1, S, S) images to class logits."""

    def __init__(self, num_classes: int, norm: Standardize, width: int = 16) -> None:
        super().__init__()
        self.norm = norm
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.norm(x)).flatten(1))


class TemporalConvNet(nn.Module):
    """Convolutions along time over sensor windows (N, W, F) to class logits.

    Uses (1, k) Conv2d kernels: the same maths as Conv1d, several times faster on CPU.
    """

    def __init__(self, features: int, window: int, num_classes: int, norm: Standardize, width: int = 16) -> None:
        super().__init__()
        self.norm = norm
        self.conv = nn.Sequential(
            nn.Conv2d(features, width, (1, 5), padding=(0, 2)),
            nn.ReLU(),
            nn.Conv2d(width, width, (1, 5), padding=(0, 2), stride=(1, 2)),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(width * ((window + 1) // 2), 32), nn.ReLU(), nn.Linear(32, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(self.norm(x).transpose(1, 2).unsqueeze(2)))


class MLP(nn.Module):
    """Standardise, fully connected layers, then back to target units: (N, F) to (N, out)."""

    def __init__(
        self,
        features: int,
        out: int,
        norm: Standardize,
        hidden: int = 64,
        layers: int = 2,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [norm]
        width = features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        blocks.append(nn.Linear(width, out))
        self.net = nn.Sequential(*blocks)
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std) if target_std > 1e-6 else 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.target_std + self.target_mean
