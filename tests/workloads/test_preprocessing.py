"""Preprocessing fitted on the training split and kept in the model, class weights, early stopping that restores
the best epoch, the classical baselines' output layout, and bad data in one line (no Ray, no MLflow server)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from testbed.templates import get_template
from workloads.baselines import ClassicalModel, best_baseline, fit_baselines, matches
from workloads.data import DataError
from workloads.loop import BestEpoch
from workloads.models import Standardize
from workloads.plain import fit_plain
from workloads.tasks import get_task
from workloads.train import prepare


def test_standardize_imputes_the_training_median_and_zeroes_what_training_never_saw():
    train = np.array([[1.0, 0.0], [3.0, 0.0], [np.nan, 0.0], [5.0, 0.0]], dtype=np.float32)
    norm = Standardize.fitted(train, axis=0)
    assert norm.fill[0].item() == pytest.approx(3.0)  # the median of the values present
    out = norm(torch.tensor([[np.nan, 1.0]], dtype=torch.float32))
    assert out[0, 0].item() == pytest.approx(0.0)  # imputed to the median == the mean here -> 0
    assert out[0, 1].item() == 0.0  # a one-hot category constant (absent) in training carries nothing


def test_imbalanced_labels_get_balanced_weights_and_balanced_ones_none():
    task = get_task("predictive-maintenance")
    from workloads.tasks import Dataset

    def labels(y):
        return Dataset(
            np.zeros((len(y), 2, 1), np.float32), np.array(y), np.arange(len(y)), ["a"], ["healthy", "failure_soon"]
        )

    assert task.class_weights(labels([0, 1] * 10)) is None
    weights = task.class_weights(labels([0] * 18 + [1] * 2))
    assert weights == pytest.approx([20 / (2 * 18), 20 / (2 * 2)])


def test_best_epoch_keeps_the_best_weights_and_stops_after_patience():
    task = get_task("tabular-quality")  # rmse: lower is better
    model = torch.nn.Linear(1, 1)
    best = BestEpoch(task, patience=2)
    stops = []
    for epoch, rmse in enumerate([5.0, 3.0, 4.0, 4.5, 2.0]):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        stops.append(best.update(epoch, {"val_rmse": rmse}, model))
    assert stops == [False, False, False, True, False] and best.epoch == 4
    best2 = BestEpoch(task, patience=0)
    for epoch, rmse in enumerate([5.0, 3.0, 4.0]):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        assert not best2.update(epoch, {"val_rmse": rmse}, model)
    assert best2.epoch == 1 and best2.weights["weight"].item() == 1.0


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
def test_missing_values_and_text_columns_are_handled_and_reported(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "site": rng.choice(["a", "b"], 300)})
    frame["y"] = 2 * frame["x"] + (frame["site"] == "b") + rng.normal(0, 0.1, 300)
    frame.loc[:9, "x"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    params = get_template("tabular-quality").resolve(
        {"data_path": str(tmp_path / "t.csv"), "target": "y", "epochs": 30}
    )
    prep = prepare("tabular-quality", params)
    assert "imputed (training median) missing values: x=10" in prep.preprocessing_report()
    model, _ = fit_plain(prep, threads=1)
    assert torch.isfinite(model(torch.tensor(prep.val.x))).all()
    baselines = fit_baselines("tabular-quality", prep.task, prep.train, prep.val, None, 0)
    best = best_baseline(prep.task, baselines)
    assert best.metrics["rmse"] < 0.5 * prep.baseline  # the classical model learns the relation
    scores = ClassicalModel("tabular-quality", best.estimator, "regression", 1).scores(prep.val.x)
    assert scores.shape == (len(prep.val), 1)


@pytest.mark.integration  # scikit-learn's joblib runs lscpu to count cores
def test_classical_classifier_answers_probabilities_for_every_class():
    params = get_template("defect-inspection").resolve({"samples": 120, "image_size": 16})
    prep = prepare("defect-inspection", params)
    baselines = fit_baselines("defect-inspection", prep.task, prep.train, prep.val, prep.class_weights, 0)
    out = ClassicalModel("defect-inspection", baselines[0].estimator, "classification", 3).scores(prep.val.x)
    assert out.shape == (len(prep.val), 3) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_matching_within_a_relative_margin():
    acc, rmse = get_task("defect-inspection"), get_task("tabular-quality")
    assert matches(acc, 0.95, 0.96, 0.02) and not matches(acc, 0.90, 0.96, 0.02)
    assert matches(rmse, 10.1, 10.0, 0.02) and not matches(rmse, 10.5, 10.0, 0.02)


def test_bad_data_fails_in_one_line_naming_path_and_column(tmp_path):
    (tmp_path / "bad.csv").write_text("x,y\n1,2\nn/a,3\nfoo,4\n")
    params = get_template("tabular-quality").resolve({"data_path": str(tmp_path / "bad.csv"), "target": "x"})
    with pytest.raises(DataError) as err:
        prepare("tabular-quality", params)
    message = str(err.value)
    assert (
        "\n" not in message and "bad.csv" in message and "column 'x' is not numeric" in message and "'n/a'" in message
    )
