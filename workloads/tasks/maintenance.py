"""Predictive maintenance (Gyeongnam machinery): will a machine fail within the horizon, from sensor windows."""

from __future__ import annotations

import numpy as np
from torch import nn

from workloads.data import DataError, read_table, require_columns
from workloads.data.synthetic import sensor_series
from workloads.models import Standardize, TemporalConvNet
from workloads.tasks.base import ClassificationTask, Dataset, Params, column_list

MACHINE_COLUMN = "machine_id"


class PredictiveMaintenance(ClassificationTask):
    name = "predictive-maintenance"

    def dataset(self, params: Params, seed: int, feature_names: list[str] | None = None) -> Dataset:
        features = feature_names or column_list(params["features"])
        label = str(params["label"])
        if params.get("data_path"):
            path = str(params["data_path"])
            frame = read_table(path)
        else:
            path, frame = (
                "<synthetic>",
                sensor_series(int(params["machines"]), int(params["steps"]), int(params["horizon"]), seed),
            )
        require_columns(frame, path, [MACHINE_COLUMN], numeric=False)
        require_columns(frame, path, [label])
        missing = require_columns(frame, path, features, allow_missing=True)
        labels = set(frame[label].unique().tolist())
        if not labels <= {0, 1}:
            raise DataError(
                f"data path {path!r}: column {label!r} must hold 0/1 labels (has {sorted(labels - {0, 1})[:3]})"
            )
        window, stride = int(params["window"]), int(params["stride"])
        xs, ys, groups = [], [], []
        for machine, rows in frame.groupby(MACHINE_COLUMN, sort=True):
            values = rows[features].to_numpy(np.float32)
            ends = np.arange(window - 1, len(rows), stride)
            if len(ends) == 0:
                continue
            xs.append(np.stack([values[e - window + 1 : e + 1] for e in ends]))
            ys.append(rows[label].to_numpy(np.int64)[ends])
            groups += [str(machine)] * len(ends)
        if not xs:
            raise DataError(f"data path {path!r}: no machine has {window} rows (the window)")
        x, y = np.concatenate(xs), np.concatenate(ys)
        return Dataset(
            x, y, np.asarray(groups), feature_names=features, classes=["healthy", "failure_soon"], missing=missing
        )

    def build_model(self, params: Params, train: Dataset) -> nn.Module:
        norm = Standardize.fitted(train.x.reshape(-1, train.x.shape[-1]), axis=0)
        return TemporalConvNet(train.x.shape[-1], train.x.shape[1], 2, norm, width=int(params["width"]))
