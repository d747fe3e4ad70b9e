"""Validation entrypoint: ``python -m workloads.validate --template validate --model=NAME ...``.

Evaluates a registered model version on held-out data (regenerated with another seed, or loaded
from ``data_path``), compares it with the version holding the alias (``champion``) on the same data,
moves the alias only when the new version is better by ``margin``, and exits 1 when it fails the
gate. A first version (no champion yet) must beat the trivial baseline. Prints a one-line verdict.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException

from testbed import jobs
from testbed.templates import TemplateError
from workloads.cli import parse_args
from workloads.data import DataError
from workloads.jobenv import JobEnv
from workloads.registry import load_run_classical, load_scorer, task_info
from workloads.tasks import Dataset, Task, get_task
from workloads.tracking import use_experiment


@dataclass
class Verdict:
    passed: bool
    line: str
    champion_version: str | None
    champion_score: float | None


def scoped_model_name(model: str, tenant: str) -> str:
    """``<template>`` -> ``<tenant>.<template>``; another tenant's model is refused."""
    if "." not in model:
        return f"{tenant}.{model}"
    if not model.startswith(f"{tenant}."):
        raise TemplateError(f"model {model!r} does not belong to tenant {tenant!r} (names are '<tenant>.<template>')")
    return model


def resolve_version(client: mlflow.MlflowClient, name: str, version: str) -> str:
    if version != "latest":
        client.get_model_version(name, version)
        return version
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise MlflowException(f"registered model {name!r} has no versions")
    return str(max(int(v.version) for v in versions))


def score(task: Task, name: str, version: str, data: Dataset) -> float:
    """The version's metric on ``data`` (a neural or a classical model alike)."""
    return task.metrics(load_scorer(name, version)(data.x), data.y)[task.metric]


def gate(
    task: Task,
    name: str,
    version: str,
    candidate: float,
    baseline: float,
    champion: str | None,
    champion_score: float | None,
    margin: float,
    alias: str,
) -> Verdict:
    """Decide and word the verdict; does not move the alias."""
    m = task.metric
    head = f"{name} v{version}: {m} {candidate:.4f}"
    if champion is None:
        delta = task.better(candidate, baseline)
        passed = delta > 0
        tail = (
            f"no {alias} yet; {'beats' if passed else 'does not beat'} the {task.baseline_name} baseline "
            f"{baseline:.4f} ({delta:+.4f})" + (f"; {alias} -> v{version}" if passed else f"; no {alias}")
        )
    elif champion == version:
        passed, tail = True, f"already the {alias}"
    else:
        assert champion_score is not None
        delta = task.better(candidate, champion_score)
        passed = delta > 0 and delta >= margin
        tail = (
            f"vs {alias} v{champion} {champion_score:.4f} ({delta:+.4f} {'>=' if passed else '<'} margin {margin:.4f}); "
            + (f"{alias} -> v{version}" if passed else f"{alias} stays v{champion}")
        )
    return Verdict(passed, f"{'PASS' if passed else 'FAIL'} {head} {tail}", champion, champion_score)


def against_classical(
    task: Task, verdict: Verdict, info: dict, run_id: str, candidate: float, data: Dataset, alias: str
) -> tuple[Verdict, float | None, bool | None]:
    """``require_beat_baseline``: the version must also beat the best classical baseline of its training run on
    the same held-out data (a version that *is* that classical model passes this check: nothing beats it there)."""
    m = task.metric
    if info.get("registered") == "classical":
        return (
            Verdict(
                verdict.passed,
                verdict.line + "; the version is the classical baseline itself",
                verdict.champion_version,
                verdict.champion_score,
            ),
            candidate,
            None,
        )
    scorer = load_run_classical(run_id)
    if scorer is None:
        line = (
            verdict.line.replace("PASS ", "FAIL ", 1)
            + "; no classical baseline was logged with it (trained with baselines=false)"
        )
        return Verdict(False, line, verdict.champion_version, verdict.champion_score), None, None
    classical = task.metrics(scorer(data.x), data.y)[m]
    beats = task.better(candidate, classical) > 0
    passed = verdict.passed and beats
    line = (
        verdict.line
        if passed or not verdict.passed
        else verdict.line.replace("PASS ", "FAIL ", 1).replace(f"{alias} -> ", f"{alias} would move to ")
    )
    line += (
        f"; vs best classical {info.get('classical')} {classical:.4f} ({task.better(candidate, classical):+.4f}: "
        f"{'beats' if beats else 'does not beat'} it)"
    )
    return Verdict(passed, line, verdict.champion_version, verdict.champion_score), classical, beats


def main(argv: Sequence[str] | None = None) -> int:
    try:
        template, params = parse_args(argv, kinds=("validation",))
        env = JobEnv.from_environ()
        name = scoped_model_name(str(params["model"]), env.tenant)
    except (TemplateError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    experiment_id = use_experiment(env, template.name)
    client = mlflow.MlflowClient()
    alias, margin = str(params["alias"]), float(params["margin"])
    try:
        version = resolve_version(client, name, str(params["version"]))
        info = task_info(client, client.get_model_version(name, version).run_id)
        task = get_task(info["template"])
        holdout = {**info["params"], "seed": int(params["holdout_seed"]), "data_path": str(params["data_path"])}
        if not holdout["data_path"] and holdout["seed"] == int(info["params"]["seed"]):
            raise DataError(
                f"holdout_seed {holdout['seed']} is the training seed: the held-out data would be the training data"
            )
        data = task.dataset(holdout, seed=holdout["seed"], feature_names=info["feature_names"] or None)
    except (MlflowException, DataError, KeyError) as exc:
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    candidate = score(task, name, version, data)
    baseline = task.baseline(data, data)
    try:
        champion: str | None = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        champion = None
    champion_score = score(task, name, champion, data) if champion not in (None, version) else None
    verdict = gate(task, name, version, candidate, baseline, champion, champion_score, margin, alias)
    classical_score = beats_classical = None
    if bool(params["require_beat_baseline"]):
        verdict, classical_score, beats_classical = against_classical(
            task, verdict, info, client.get_model_version(name, version).run_id, candidate, data, alias
        )

    tags = {
        **env.tags("validation"),
        "testbed.model": name,
        "testbed.model_version": version,
        "testbed.verdict": verdict.line,
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"validate-{name}-v{version}", tags=tags):
        mlflow.log_params(
            {
                "model": name,
                "version": version,
                "margin": margin,
                "alias": alias,
                "holdout_seed": params["holdout_seed"],
                "data_path": params["data_path"],
                "champion_version": champion or "",
                "template": info["template"],
                "holdout_samples": len(data),
                "require_beat_baseline": params["require_beat_baseline"],
            }
        )
        metrics = {
            f"candidate_{task.metric}": candidate,
            f"baseline_{task.metric}": baseline,
            "passed": float(verdict.passed),
        }
        if champion_score is not None:
            metrics[f"champion_{task.metric}"] = champion_score
        if classical_score is not None:
            metrics[f"classical_{task.metric}"] = classical_score
        if beats_classical is not None:
            metrics["beats_classical"] = float(beats_classical)
        mlflow.log_metrics(metrics)
    client.set_model_version_tag(name, version, f"validation.{task.metric}", f"{candidate:.6f}")
    client.set_model_version_tag(name, version, "validation.verdict", "pass" if verdict.passed else "fail")
    client.set_model_version_tag(name, version, jobs.TAG_JOB_ID + ".validation", env.job_id)
    if verdict.passed and champion != version:
        client.set_registered_model_alias(name, alias, version)
    print(verdict.line)
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
