"""Loaders for a company's own data give one clear line for a wrong path or schema; synthetic
generators have the structure the templates rely on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from testbed.templates import get_template
from workloads.data import DataError, read_image_folder, read_table
from workloads.data.synthetic import defect_images, power_series, quality_table, sensor_series
from workloads.tasks import get_task


def params(template: str, **overrides: object) -> dict:
    return get_template(template).resolve(dict(overrides))  # type: ignore[arg-type]


def test_missing_path_is_one_clear_line(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as info:
        get_task("tabular-quality").dataset(params("tabular-quality", data_path=str(path)), seed=0)
    assert str(info.value) == f"data path {str(path)!r}: does not exist"


def test_missing_and_non_numeric_columns_are_named(tmp_path):
    frame = sensor_series(3, 60, 10, seed=0).drop(columns=["current"])
    frame.to_parquet(tmp_path / "sensors.parquet")
    with pytest.raises(DataError, match=r"column 'current' is missing"):
        get_task("predictive-maintenance").dataset(
            params("predictive-maintenance", data_path=str(tmp_path / "sensors.parquet")), seed=0
        )
    bad = quality_table(50, seed=0).assign(quality="good")
    bad.to_csv(tmp_path / "batches.csv", index=False)
    with pytest.raises(DataError, match=r"column 'quality' is not numeric"):
        get_task("tabular-quality").dataset(params("tabular-quality", data_path=str(tmp_path / "batches.csv")), seed=0)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="expected a .csv"):
        read_table(str(tmp_path / "notes.txt"))


def test_own_tables_load_like_synthetic(tmp_path):
    quality_table(200, seed=1).to_csv(tmp_path / "q.csv", index=False)
    data = get_task("tabular-quality").dataset(params("tabular-quality", data_path=str(tmp_path / "q.csv")), seed=0)
    assert data.x.shape == (200, 10) and "supplier=C" in data.feature_names
    held_out = quality_table(30, seed=2).query("supplier != 'D'")
    held_out.to_parquet(tmp_path / "h.parquet")
    again = get_task("tabular-quality").dataset(
        params("tabular-quality", data_path=str(tmp_path / "h.parquet")), seed=0, feature_names=data.feature_names
    )
    assert again.feature_names == data.feature_names and again.x[:, data.feature_names.index("supplier=D")].sum() == 0
    power_series(10, "wind", seed=0).to_csv(tmp_path / "wind.csv", index=False)
    wind = get_task("power-forecast").dataset(params("power-forecast", data_path=str(tmp_path / "wind.csv")), seed=0)
    assert len(wind) == 10 * 24 - 24 + 1 - 3


def test_image_folder(tmp_path):
    images, labels = defect_images(12, 32, 0.5, seed=0)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / ["ok", "scratch", "dent"][label]
        folder.mkdir(exist_ok=True)
        Image.fromarray((image[0] * 255).astype(np.uint8)).save(folder / f"{i}.png")
    x, y, classes = read_image_folder(str(tmp_path), 16)
    assert x.shape == (12, 1, 16, 16) and classes == sorted(
        {"ok", "scratch", "dent"} & {p.name for p in tmp_path.iterdir()}
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="class folder 'empty' has no images"):
        read_image_folder(str(tmp_path), 16)


def test_synthetic_structure():
    solar = power_series(20, "solar", seed=0)
    hour = solar.timestamp.dt.hour
    assert solar.power[(hour < 4) | (hour > 21)].max() == 0 and solar.power[hour == 12].mean() > 0.3
    sensors = sensor_series(5, 400, 30, seed=0)
    assert sensors.groupby("failure_soon").vibration.mean().diff().iloc[-1] > 0.5  # wear shows before failure
    images, labels = defect_images(300, 32, 0.4, seed=0)
    assert set(np.unique(labels)) == {0, 1, 2} and images.min() >= 0 and images.max() <= 1
    assert np.array_equal(defect_images(5, 16, 0.4, seed=7)[0], defect_images(5, 16, 0.4, seed=7)[0])  # seeded
    table = quality_table(2000, seed=0)
    hot_humid = table[(table.extraction_temp > 75) & (table.humidity > 70)].quality.mean()
    hot_dry = table[(table.extraction_temp > 75) & (table.humidity < 50)].quality.mean()
    assert hot_dry - hot_humid > 2  # heat hurts more when humid (an interaction)
    assert isinstance(table, pd.DataFrame)


@pytest.mark.integration
def test_wrong_data_path_fails_the_job_with_one_line(workloads):
    job = workloads.run("defect-inspection", tenant="tenant-a", data_path="/nonexistent/images")
    assert job.returncode == 2
    assert job.stderr.strip() == "error: data path '/nonexistent/images': does not exist"
