"""Renewable power forecasting (Jeonnam): plant output ``horizon`` hours ahead from recent output
and the weather forecast. The trivial baseline is persistence (the last observed output)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch import nn

from workloads.data import DataError, read_table, require_columns
from workloads.data.synthetic import power_series
from workloads.models import MLP, Standardize
from workloads.tasks.base import Dataset, Params, RegressionTask, column_list

TIME_COLUMN, TARGET_COLUMN = "timestamp", "power"


class PowerForecast(RegressionTask):
    name = "power-forecast"
    baseline_name = "persistence"

    def dataset(self, params: Params, seed: int, feature_names: list[str] | None = None) -> Dataset:
        weather = column_list(params["features"])
        if params.get("data_path"):
            path = str(params["data_path"])
            frame = read_table(path)
            require_columns(frame, path, [TIME_COLUMN], numeric=False)
            require_columns(frame, path, [TARGET_COLUMN])
            missing = require_columns(frame, path, weather, allow_missing=True)
            try:
                frame[TIME_COLUMN] = pd.to_datetime(frame[TIME_COLUMN])
            except (ValueError, TypeError):
                raise DataError(f"data path {path!r}: column {TIME_COLUMN!r} is not a date-time") from None
            frame = frame.sort_values(TIME_COLUMN)
        else:
            frame, missing = power_series(int(params["days"]), str(params["source"]), seed), {}
        window, horizon = int(params["window"]), int(params["horizon"])
        power = frame[TARGET_COLUMN].to_numpy(np.float32)
        ahead = frame[weather].to_numpy(np.float32)
        stamp = pd.DatetimeIndex(frame[TIME_COLUMN])
        hour, day = stamp.hour.to_numpy() + stamp.minute.to_numpy() / 60, stamp.day_of_year.to_numpy()
        calendar = np.stack(
            [
                np.sin(2 * np.pi * hour / 24),
                np.cos(2 * np.pi * hour / 24),
                np.sin(2 * np.pi * day / 365),
                np.cos(2 * np.pi * day / 365),
            ],
            axis=1,
        ).astype(np.float32)
        now = np.arange(window - 1, len(frame) - horizon)
        if len(now) < 10:
            raise DataError(
                f"data path {params.get('data_path') or '<synthetic>'!r}: {len(frame)} rows are too few for window {window} and horizon {horizon}"
            )
        past = np.stack([power[t - window + 1 : t + 1] for t in now])
        x = np.concatenate([past, ahead[now + horizon], calendar[now + horizon]], axis=1)
        names = [f"power_t-{window - 1 - i}" for i in range(window)] + [f"{c}_t+{horizon}" for c in weather]
        names += ["hour_sin", "hour_cos", "day_sin", "day_cos"]
        return Dataset(x, power[now + horizon, None], now, feature_names=names, chronological=True, missing=missing)

    def build_model(self, params: Params, train: Dataset) -> nn.Module:
        return MLP(
            train.x.shape[1],
            1,
            Standardize.fitted(train.x, axis=0),
            hidden=int(params["width"]),
            target_mean=float(train.y.mean()),
            target_std=float(train.y.std()),
        )

    def baseline(self, train: Dataset, evaluation: Dataset) -> float:
        last = evaluation.feature_names.index("power_t-0")
        return self.metrics(evaluation.x[:, last : last + 1], evaluation.y)[self.metric]
