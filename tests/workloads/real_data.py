"""Real data sets that installed packages ship (nothing is downloaded), written the way a company keeps its own:
a folder of class folders of PNG images, and CSV tables.

- defect-inspection: scikit-learn's digits (1,797 real 8x8 scans of handwritten digits, 10 classes) as
  ``<class>/<n>.png``; the closest real image set an installed package ships (no package ships product photos).
- tabular-quality: scikit-learn's diabetes table (442 patients, 10 measurements, disease progression after a
  year) as CSV, with ``sex`` as a text column and a few values blanked (a company's table has gaps).
- predictive-maintenance: no installed package ships run-to-failure sensor data. The closest real multi-unit
  time series is matplotlib's ``Stocks.csv`` (monthly prices of 10 series, 1990-2017, with gaps); each series
  is a "machine", the "sensors" are its log-return and its 6-month volatility and drawdown, and the 0/1 label
  is a real event derived from the series' own future, as run-to-failure labels are: a fall of 10% or more
  within the next 3 months.
- power-forecast: no installed package ships plant output either; matplotlib's ``goog.npz`` (1,047 trading days)
  stands in: ``power`` is the closing price scaled to 0-1, no weather columns (``features=``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def digits_folder(root: Path) -> Path:
    """scikit-learn's digits as ``root/<digit>/<index>.png`` (8x8 grayscale)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = root / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * (255 / 16)).astype(np.uint8), mode="L").save(folder / f"{index:04d}.png")
    return root


def diabetes_csv(path: Path, blanks: int = 12, seed: int = 0) -> Path:
    """scikit-learn's diabetes table (raw units) as CSV: ``sex`` as text, ``blanks`` values of ``bmi`` blanked,
    the target column ``progression``."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    frame["sex"] = frame["sex"].map({1.0: "female", 2.0: "male"})
    rows = np.random.default_rng(seed).choice(len(frame), size=blanks, replace=False)
    frame.loc[rows, "bmi"] = np.nan
    frame.to_csv(path, index=False)
    return path


def stocks_sensor_csv(path: Path, horizon: int = 3, drop: float = 0.10) -> Path:
    """matplotlib's Stocks.csv as machines' sensor logs (see the module docstring), rows in time order."""
    from matplotlib import cbook

    prices = pd.read_csv(cbook.get_sample_data("Stocks.csv"), comment="#", parse_dates=["Date"]).set_index("Date")
    frames = []
    for name, series in prices.items():
        series = series.dropna()
        log_return = np.log(series).diff()
        future_min = series[::-1].rolling(horizon, min_periods=1).min()[::-1].shift(-1)
        frame = pd.DataFrame(
            {
                "machine_id": name,
                "timestamp": series.index,
                "log_return": log_return.to_numpy(),
                "volatility": log_return.rolling(6).std().to_numpy(),
                "drawdown": (series / series.cummax() - 1).to_numpy(),
                "failure_soon": (future_min / series - 1 <= -drop).astype(int).to_numpy(),
            }
        ).iloc[1:-horizon]  # the first row has no return; the last rows no future to label
        frames.append(frame)
    pd.concat(frames).to_csv(path, index=False)
    return path


def goog_power_csv(path: Path) -> Path:
    """matplotlib's goog.npz closing prices scaled to 0-1 as ``timestamp,power``."""
    from matplotlib import cbook

    prices = cbook.get_sample_data("goog.npz")["price_data"]  # matplotlib opens .npz files itself
    close = prices["adj_close"].astype(np.float64)
    frame = pd.DataFrame(
        {
            "timestamp": prices["date"].astype("datetime64[ns]"),
            "power": (close - close.min()) / (close.max() - close.min()),
        }
    )
    frame.to_csv(path, index=False)
    return path


# template -> (writer, the file or folder name it writes, the template params for it)
REAL_SETS = {
    "defect-inspection": (
        digits_folder,
        "digits",
        "scikit-learn digits (1,797 8x8 images, 10 classes)",
        {"image_size": 16, "epochs": 6, "patience": 3},
    ),
    "tabular-quality": (
        diabetes_csv,
        "diabetes.csv",
        "scikit-learn diabetes (442 rows, 10 columns, gaps)",
        {"target": "progression", "epochs": 100, "patience": 15, "batch_size": 32},
    ),
    "predictive-maintenance": (
        stocks_sensor_csv,
        "stocks.csv",
        "matplotlib Stocks.csv as 10 machines (monthly, gaps)",
        {
            "features": "log_return,volatility,drawdown",
            "label": "failure_soon",
            "window": 6,
            "stride": 1,
            "epochs": 15,
            "patience": 5,
        },
    ),
    "power-forecast": (
        goog_power_csv,
        "goog.csv",
        "matplotlib goog.npz close as power (1,047 days)",
        {"features": "", "window": 10, "horizon": 1, "epochs": 15, "patience": 5},
    ),
}
