"""Tabular quality prediction (Jeju food and beauty): a batch's quality score from its process record."""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch import nn

from workloads.data import DataError, read_table, require_columns
from workloads.data.synthetic import quality_table
from workloads.models import MLP, Standardize
from workloads.tasks.base import Dataset, Params, RegressionTask


class TabularQuality(RegressionTask):
    name = "tabular-quality"
    metric = "rmse"

    def dataset(self, params: Params, seed: int, feature_names: list[str] | None = None) -> Dataset:
        target = str(params["target"])
        path = str(params.get("data_path") or "<synthetic>")
        frame = read_table(path) if params.get("data_path") else quality_table(int(params["samples"]), seed)
        require_columns(frame, path, [target])
        inputs = frame.drop(columns=[target])
        if inputs.shape[1] == 0:
            raise DataError(f"data path {path!r}: has no columns besides the target {target!r}")
        x, names = encode(inputs, path, feature_names)
        y = frame[target].to_numpy(np.float32)[:, None]
        missing = {str(c): int(n) for c, n in inputs.isna().sum().items() if n}
        return Dataset(x, y, np.arange(len(y)), feature_names=names, missing=missing)

    def build_model(self, params: Params, train: Dataset) -> nn.Module:
        return MLP(
            train.x.shape[1],
            1,
            Standardize.fitted(train.x, axis=0),
            hidden=int(params["width"]),
            target_mean=float(train.y.mean()),
            target_std=float(train.y.std()),
        )


def encode(frame: pd.DataFrame, path: str, feature_names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Numbers as they are (a missing one stays NaN: the model imputes the training median), text / category
    columns one-hot as ``column=value`` (a missing one is its own category); with ``feature_names`` the columns
    are laid out exactly as the model expects. A category absent from the training split is zeroed by the
    model's preprocessing (fitted on that split)."""
    parts = []
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            parts.append(pd.get_dummies(series.astype(str), prefix=str(column), prefix_sep="=", dtype=np.float32))
        else:
            if series.isna().all():
                raise DataError(f"data path {path!r}: column {column!r} has no values (all {len(series)} missing)")
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
