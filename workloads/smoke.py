"""Smoke template: fit a tiny linear regression with numpy and log it to MLflow.

Checks a tenant's wiring (tracking URI, experiment, tags) in a few seconds; no Ray Train.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import mlflow
import numpy as np

from testbed.templates import TemplateError
from workloads.cli import parse_args
from workloads.jobenv import JobEnv
from workloads.tracking import use_experiment


def fit(epochs: int, lr: float, seed: int) -> list[float]:
    """Gradient descent on y = Xw + b + noise; the mean squared error after each epoch."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 0.3 + rng.normal(scale=0.1, size=256)
    w, b, losses = np.zeros(3), 0.0, []
    for _ in range(epochs):
        err = x @ w + b - y
        w -= lr * 2 * x.T @ err / len(y)
        b -= lr * 2 * err.mean()
        losses.append(float(np.mean((x @ w + b - y) ** 2)))
    return losses


def main(argv: Sequence[str] | None = None) -> int:
    try:
        template, params = parse_args(argv, kinds=("smoke",))
        env = JobEnv.from_environ()
    except (TemplateError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    use_experiment(env, template.name)
    with mlflow.start_run(run_name=f"{template.name}-{env.job_id}", tags=env.tags("train")) as run:
        mlflow.log_params({"template": template.name, **params})
        losses = fit(int(params["epochs"]), float(params["lr"]), int(params["seed"]))
        for epoch, loss in enumerate(losses):
            mlflow.log_metric("train_loss", loss, step=epoch)
    print(f"run_id={run.info.run_id} final_loss={losses[-1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
