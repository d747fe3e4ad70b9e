"""Visual defect inspection (Ulsan / Gyeongnam manufacturing): a small CNN sorts surface images."""

from __future__ import annotations

import numpy as np
from torch import nn

from workloads.data import DataError, read_image_folder
from workloads.data.synthetic import DEFECT_CLASSES, defect_images
from workloads.models import SmallCNN, Standardize
from workloads.tasks.base import ClassificationTask, Dataset, Params


class DefectInspection(ClassificationTask):
    name = "defect-inspection"

    def dataset(self, params: Params, seed: int, feature_names: list[str] | None = None) -> Dataset:
        size = int(params["image_size"])
        if params.get("data_path"):
            x, y, classes = read_image_folder(str(params["data_path"]), size)
            if feature_names and classes != feature_names:
                raise DataError(
                    f"data path {params['data_path']!r}: classes {classes} differ from the model's {feature_names}"
                )
        else:
            x, y = defect_images(int(params["samples"]), size, float(params["defect_rate"]), seed)
            classes = DEFECT_CLASSES
        return Dataset(x, y, np.arange(len(y)), feature_names=list(classes), classes=list(classes))

    def build_model(self, params: Params, train: Dataset) -> nn.Module:
        return SmallCNN(len(train.classes), Standardize.fitted(train.x, axis=None), width=int(params["width"]))

    def classical_features(self, x: np.ndarray) -> np.ndarray:
        """Images averaged down to at most 8x8 (64 numbers): what a gradient-boosting or linear model can use."""
        n, size = len(x), x.shape[-1]
        f = max(1, size // 8)
        side = size // f
        return x[:, 0, : side * f, : side * f].reshape(n, side, f, side, f).mean(axis=(2, 4)).reshape(n, -1)
