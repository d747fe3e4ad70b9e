"""Honest classical baselines beside every neural model: scikit-learn on the same training split, scored on the
same validation split with the task's own metric.

- classification: logistic regression (L2, C=1, balanced class weights when the labels are imbalanced) and
  histogram gradient boosting;
- regression: ridge regression (its L2 strength chosen by cross-validation on the training split) and histogram
  gradient boosting.
Missing values are imputed with the training median (the linear models) or handled natively (gradient boosting).
Inputs are the task's ``classical_features`` (e.g. images averaged down to 8x8). The winner can be registered
instead of the neural model: :class:`ClassicalModel` gives it the neural model's output layout (class
probabilities, or values as (N, 1)) so the validation gate scores both the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import mlflow.pyfunc
import numpy as np

from workloads.tasks import Dataset, Task

LINEAR, BOOSTING = "linear", "gradient_boosting"


@dataclass
class Baseline:
    """One fitted classical model and its validation metrics."""

    name: str
    description: str
    estimator: Any
    metrics: dict[str, float]
    seconds: float


class ClassicalModel(mlflow.pyfunc.PythonModel):
    """A fitted scikit-learn estimator as an MLflow model that answers like the neural one: raw inputs in,
    class probabilities (N, C) or values (N, 1) out."""

    def __init__(self, template: str, estimator: Any, problem: str, classes: int) -> None:
        self.template, self.estimator, self.problem, self.classes = template, estimator, problem, classes

    def scores(self, x: np.ndarray) -> np.ndarray:
        from workloads.tasks import get_task

        features = get_task(self.template).classical_features(np.asarray(x, dtype=np.float32))
        if self.problem == "regression":
            return np.asarray(self.estimator.predict(features), dtype=np.float32).reshape(-1, 1)
        proba = self.estimator.predict_proba(features)
        out = np.zeros((len(features), self.classes), dtype=np.float32)
        out[:, self.estimator.classes_] = proba  # a class absent from training keeps probability 0
        return out

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # no hints: MLflow reads them as a schema
        return self.scores(np.asarray(model_input))


def _estimators(task: Task, class_weights: list[float] | None, seed: int) -> dict[str, tuple[str, Any]]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def linear(model: Any) -> Any:
        return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), model)

    if task.problem == "classification":
        balanced = "balanced" if class_weights else None
        return {
            LINEAR: (
                "logistic regression (L2, C=1)",
                linear(LogisticRegression(C=1.0, max_iter=2000, class_weight=balanced)),
            ),
            BOOSTING: (
                "histogram gradient boosting",
                HistGradientBoostingClassifier(
                    max_iter=200, early_stopping=True, random_state=seed, class_weight=balanced
                ),
            ),
        }
    return {
        LINEAR: ("ridge regression (alpha by CV)", linear(RidgeCV(alphas=np.logspace(-3, 3, 13)))),
        BOOSTING: (
            "histogram gradient boosting",
            HistGradientBoostingRegressor(max_iter=300, early_stopping=True, random_state=seed),
        ),
    }


def fit_baselines(
    template: str,
    task: Task,
    train: Dataset,
    val: Dataset,
    class_weights: list[float] | None,
    seed: int,
    threads: int = 1,
) -> list[Baseline]:
    """Fit every classical baseline on ``train`` and score it on ``val`` (at most ``threads`` CPU threads)."""
    from threadpoolctl import threadpool_limits

    x_train = task.classical_features(train.x)
    y_train = train.y.reshape(-1) if task.problem == "regression" else train.y
    classes = max(len(train.classes), int(train.y.max()) + 1) if task.problem == "classification" else 1
    fitted = []
    with threadpool_limits(limits=max(1, threads)):
        for name, (description, estimator) in _estimators(task, class_weights, seed).items():
            started = time.perf_counter()
            estimator.fit(x_train, y_train)
            model = ClassicalModel(template, estimator, task.problem, classes)
            metrics = task.metrics(model.scores(val.x), val.y)
            fitted.append(Baseline(name, description, estimator, metrics, time.perf_counter() - started))
    return fitted


def best_baseline(task: Task, baselines: list[Baseline]) -> Baseline:
    """The baseline with the best value of the task's metric."""
    return max(baselines, key=lambda b: b.metrics[task.metric] if task.higher_is_better else -b.metrics[task.metric])


def matches(task: Task, neural: float, classical: float, margin: float) -> bool:
    """Whether the neural model is at least as good as ``classical`` less ``margin`` (relative: 0.02 is 2%)."""
    return task.better(neural, classical) >= -margin * abs(classical)
