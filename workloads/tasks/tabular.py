"""Tabular quality prediction (Jeju food and beauty): a batch's quality score from its process record."""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch import nn

from workloads.data import DataError, read_table, require_columns
from workloads.data.synthetic import quality_table
from workloads.models import MLP
from workloads.tasks.base import Dataset, Params, RegressionTask


class TabularQuality(RegressionTask):
    name = "tabular-quality"
    metric = "rmse"

    def dataset(self, params: Params, seed: int, feature_names: list[str] | None = None) -> Dataset:
        target = str(params["target"])
        path = str(params.get("data_path") or "<synthetic>")
        frame = read_table(path) if params.get("data_path") else quality_table(int(params["samples"]), seed)
        require_columns(frame, path, [target])
        x, names = encode(frame.drop(columns=[target]), path, feature_names)
        y = frame[target].to_numpy(np.float32)[:, None]
        return Dataset(x, y, np.arange(len(y)), feature_names=names)

    def build_model(self, params: Params, train: Dataset) -> nn.Module:
        return MLP(
            train.x.shape[1], 1, train.x.mean(0), train.x.std(0), hidden=int(params["width"]),
            target_mean=float(train.y.mean()), target_std=float(train.y.std()),
        )


def encode(frame: pd.DataFrame, path: str, feature_names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Numbers as they are, text / category columns one-hot as ``column=value``; with
    ``feature_names`` the columns are laid out exactly as the model expects."""
    parts = []
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            parts.append(pd.get_dummies(series.astype(str), prefix=str(column), prefix_sep="=", dtype=np.float32))
        else:
            if series.isna().any():
                raise DataError(f"data path {path!r}: column {column!r} has {int(series.isna().sum())} missing values")
            parts.append(series.astype(np.float32).to_frame(str(column)))
    encoded = pd.concat(parts, axis=1)
    if feature_names is not None:
        numeric_missing = [n for n in feature_names if "=" not in n and n not in encoded.columns]
        if numeric_missing:
            raise DataError(f"data path {path!r}: column {numeric_missing[0]!r} is missing (the model needs it)")
        encoded = encoded.reindex(columns=feature_names, fill_value=0.0)
    else:
        encoded = encoded[sorted(encoded.columns)]
    return encoded.to_numpy(np.float32), list(encoded.columns)
